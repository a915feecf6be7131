//! Build script: puts the git commit into `--version` (`0.1.0 (git 1a2b3c4)`)
//! when building from a checkout. Without a `.git` next to Cargo.toml (a
//! tarball, the docker build, which excludes it) or without git, the version
//! is the crate's alone; nothing here can fail the build.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // `.git` is a directory in a clone and a file in a worktree; a git repo
    // further up (this tree unpacked inside another) must not lend its commit.
    let commit = if Path::new(&dir).join(".git").exists() {
        git(&dir, &["rev-parse", "--short=12", "HEAD"])
    } else {
        None
    };
    match commit {
        Some(c) => {
            println!("cargo:rustc-env=NETSERVD_VERSION={version} (git {c})");
            // Rebuild when HEAD moves (a commit, a checkout).
            if let Some(head) = git(&dir, &["rev-parse", "--git-path", "HEAD"]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    Path::new(&dir).join(head).display()
                );
            }
            if let Some(logs) = git(&dir, &["rev-parse", "--git-path", "logs/HEAD"]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    Path::new(&dir).join(logs).display()
                );
            }
        }
        None => println!("cargo:rustc-env=NETSERVD_VERSION={version}"),
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The trimmed output of `git ARGS` in `dir`, if git ran and succeeded.
fn git(dir: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
