//! What the fuzz targets check, as plain functions over one input. The
//! cargo-fuzz targets call them with libFuzzer's inputs; `tests/fuzz_corpus.rs`
//! calls them with every file under `fuzz/corpus/<target>/`, so the seeds and
//! every crash ever found run in plain `cargo test` (and CI) without a fuzzer.
//! A failed check panics, which libFuzzer reports as a crash.
// Each fuzz target includes this file and calls one of these.
#![allow(dead_code)]

use bytes::BytesMut;
use netservd::config::{self, MAX_FRAME_LIMIT};
use netservd::frame::{ByteOrder, FrameFormat};

/// Input: byte 0 picks the format (bits 0-1: a 1, 2, 4 or 8-byte length
/// field; bit 2: little endian; bit 3: no limit at all, u64::MAX, to probe
/// arithmetic beyond what config validation allows); bytes 1..5 the limit
/// (u32, big endian, capped to what the field can express); byte 5 how many
/// read sizes follow (mod 16); each following byte b is a read of b+1 bytes,
/// used in turn; the rest is the byte stream a peer sends.
///
/// Checks that reading the stream in those chunks through the server's steps
/// echoes exactly what decoding the whole stream at once finds (same frames,
/// same oversize verdict), and never holds more than one incomplete frame.
pub fn frame_decoder(data: &[u8]) {
    let Some((&[mode, l0, l1, l2, l3, k], rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let width = [1u8, 2, 4, 8][usize::from(mode & 3)];
    let order = if mode & 4 != 0 {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    let limit = if mode & 8 != 0 {
        u64::MAX
    } else {
        u64::from(u32::from_be_bytes([l0, l1, l2, l3]))
    };
    let f = FrameFormat {
        width,
        order,
        max_frame: limit.min(FrameFormat::max_expressible(width)),
    };
    let k = usize::from(k % 16);
    if rest.len() < k {
        return;
    }
    let (sizes, stream) = rest.split_at(k);

    let mut chunks = Vec::new();
    let mut at = 0;
    for i in 0.. {
        if at >= stream.len() {
            break;
        }
        let size = sizes
            .get(i % k.max(1))
            .map_or(stream.len(), |&b| usize::from(b) + 1);
        let end = (at + size).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    let got = f.replay(chunks.iter().copied());

    // Reference: the client-side decoder over the whole stream at once.
    let mut whole = BytesMut::from(stream);
    let (mut frames, mut error) = (0u64, None);
    loop {
        match f.decode(&mut whole) {
            Ok(Some(_)) => frames += 1,
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let consumed = stream.len() - whole.len();
    assert_eq!(
        got.echoed,
        &stream[..consumed],
        "echoed bytes differ from the complete frames"
    );
    assert_eq!(got.frames, frames, "frame count differs");
    assert_eq!(got.error, error, "oversize verdict depends on chunking");
    if error.is_none() {
        assert_eq!(
            got.pending,
            whole.len(),
            "held bytes differ from the incomplete tail"
        );
    }
    let bound = u128::from(width) + u128::from(f.max_frame);
    assert!(
        (got.peak_pending as u128) < bound.max(1),
        "held {} bytes, over one incomplete frame ({bound})",
        got.peak_pending
    );
}

/// Input: any bytes; UTF-8 ones are a config file. Parsing plus validation
/// never panics; a config it accepts obeys the limits validation promises;
/// a rejected one has at least one error, each placed inside the file.
pub fn config(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(src, "fuzz.toml") {
        Ok(cfg) => {
            for s in &cfg.tcp_echo {
                assert!(
                    s.max_frame_bytes <= MAX_FRAME_LIMIT,
                    "accepted max_frame_bytes {}",
                    s.max_frame_bytes
                );
                assert!(
                    s.max_frame_bytes <= FrameFormat::max_expressible(s.length_field_bytes),
                    "limit beyond the length field"
                );
                assert!([1, 2, 4, 8].contains(&s.length_field_bytes));
                assert!(s.max_connections >= 1);
            }
            for u in &cfg.udp_echo {
                assert!((1..=netservd::MAX_UDP_PAYLOAD).contains(&u.max_datagram_bytes));
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "rejected without saying why");
            let lines = src.split('\n').count();
            for d in &e.diagnostics {
                assert!(
                    d.line >= 1 && d.line <= lines && d.col >= 1,
                    "error placed outside the file: {d:?}"
                );
                assert!(!d.message.is_empty());
            }
            let _ = e.to_string();
        }
    }
}
