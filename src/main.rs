//! The `netservd` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;

/// jemalloc on Linux, as Vector and TiKV ship: tokio's task cells and socket
/// registrations are 128-byte aligned, and glibc's aligned allocations waste
/// about 230 B per connection around them (10,000 idle connections: 1,156 B
/// each with glibc, 920 B with jemalloc; BENCHMARKS.md).
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = netservd::cli::Cli::parse();
    if let Err(e) = netservd::logging::init(cli.log_format, cli.color) {
        eprintln!("netservd: {e}");
        return std::process::ExitCode::from(netservd::EXIT_CONFIG as u8);
    }
    netservd::cli::run(cli)
}
