//! The `netservd` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = netservd::cli::Cli::parse();
    netservd::logging::init(cli.log_format);
    netservd::cli::run(cli)
}
