//! Runs every file of the fuzz corpora (`fuzz/corpus/<target>/`: the seeds
//! and every crash the fuzzer ever found) through the same checks the
//! cargo-fuzz targets run (`fuzz/checks.rs`), so CI covers them on stable
//! without libFuzzer.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Calls `check` on every file of `fuzz/corpus/<target>`; a failing file is named.
fn run_corpus(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "corpus {} has only {} files",
        dir.display(),
        files.len()
    );
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: corpus file {} fails its check", path.display());
        }
    }
    eprintln!("{target}: {} corpus files pass", files.len());
}

#[test]
fn frame_decoder_corpus() {
    run_corpus("frame_decoder", checks::frame_decoder);
}

#[test]
fn config_corpus() {
    run_corpus("config", checks::config);
}
