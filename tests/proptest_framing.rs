//! Property tests for framing over arbitrary chunk boundaries: a stream of
//! frames cut at any points and fed read by read through the server's own
//! steps (`FrameFormat::replay`: append, `scan`, echo the complete prefix)
//! echoes exactly the frames, holds at most one partial frame, and detects an
//! oversized header at the same frame however the bytes were split.

use bytes::BytesMut;
use netservd::frame::{ByteOrder, FrameError, FrameFormat, Replay};
use proptest::prelude::*;
use proptest::sample::Index;

/// A format with a small limit, so payloads at and around it are cheap.
fn format() -> impl Strategy<Value = FrameFormat> {
    (
        prop::sample::select(vec![1u8, 2, 4, 8]),
        any::<bool>(),
        0u64..=300,
    )
        .prop_map(|(width, big, max)| FrameFormat {
            width,
            order: if big {
                ByteOrder::Big
            } else {
                ByteOrder::Little
            },
            max_frame: max.min(FrameFormat::max_expressible(width)),
        })
}

/// Payloads that each fit the format's limit.
fn payloads(max: u64) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=max as usize), 0..12)
}

fn encode_all(f: &FrameFormat, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in payloads {
        f.encode(p, &mut out);
    }
    out.to_vec()
}

/// `stream` cut at the positions `cuts` pick (duplicates make empty reads, which the server never sees, so they are dropped).
fn split<'a>(stream: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

fn case() -> impl Strategy<Value = (FrameFormat, Vec<Vec<u8>>, Vec<Index>)> {
    format().prop_flat_map(|f| {
        (
            Just(f),
            payloads(f.max_frame),
            prop::collection::vec(any::<Index>(), 0..24),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_chunking_echoes_the_same_frames((f, frames, cuts) in case()) {
        let stream = encode_all(&f, &frames);
        let r = f.replay(split(&stream, &cuts));
        prop_assert_eq!(&r.echoed, &stream);
        prop_assert_eq!(r.frames, frames.len() as u64);
        prop_assert_eq!(r.error, None);
        prop_assert_eq!(r.pending, 0);
        // At most one incomplete frame is ever held between reads.
        prop_assert!(r.peak_pending < f.width as usize + f.max_frame as usize);
    }

    #[test]
    fn a_trailing_partial_frame_is_held_not_echoed((f, frames, cuts) in case(), cut in any::<Index>()) {
        let mut stream = encode_all(&f, &frames);
        let whole = stream.len();
        let mut last = BytesMut::new();
        f.encode(&vec![0xAB; f.max_frame as usize], &mut last);
        // Some strict prefix of one more frame: header and payload both possibly partial.
        let keep = cut.index(last.len());
        stream.extend_from_slice(&last[..keep]);
        let r = f.replay(split(&stream, &cuts));
        prop_assert_eq!(&r.echoed[..], &stream[..whole]);
        prop_assert_eq!(r.pending, keep);
        prop_assert_eq!(r.error, None);
    }

    #[test]
    fn oversize_is_detected_at_the_same_frame_whatever_the_chunking(
        (f, frames, cuts) in case().prop_filter("limit below the field's range", |(f, _, _)| f.max_frame < FrameFormat::max_expressible(f.width)),
        excess in 1u64..1000,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut stream = encode_all(&f, &frames);
        let good = stream.len();
        let declared = f.max_frame.saturating_add(excess).min(FrameFormat::max_expressible(f.width));
        let header = match f.order {
            ByteOrder::Big => declared.to_be_bytes()[8 - f.width as usize..].to_vec(),
            ByteOrder::Little => declared.to_le_bytes()[..f.width as usize].to_vec(),
        };
        stream.extend_from_slice(&header);
        stream.extend_from_slice(&tail);
        let whole = f.replay([&stream[..]]);
        let chunked = f.replay(split(&stream, &cuts));
        prop_assert_eq!(&chunked, &Replay { pending: chunked.pending, peak_pending: chunked.peak_pending, ..whole.clone() });
        prop_assert_eq!(chunked.error, Some(FrameError::TooLarge { declared, max: f.max_frame }));
        prop_assert_eq!(&chunked.echoed[..], &stream[..good]);
        prop_assert_eq!(chunked.frames, frames.len() as u64);
        // The oversized frame's payload is never buffered: only its header and what came in the same read.
        prop_assert!(chunked.pending <= f.width as usize + tail.len());
    }
}
