//! `netservd listen`: placeholder until its issue lands.

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target URL.
    pub url: String,
}

pub async fn run(a: Args) -> i32 {
    eprintln!(
        "netservd listen {}: not implemented in this build yet",
        a.url
    );
    crate::EXIT_FAILURE
}
