//! Fuzz target: arbitrary bytes in arbitrary chunks through the echo server's
//! framing steps. The checks are in `../checks.rs` (shared with the corpus test).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frame_decoder(data));
