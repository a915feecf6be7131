//! Fuzz target: arbitrary text through config parsing and validation. The
//! checks are in `../checks.rs` (shared with the corpus test).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
