//! Length-prefixed framing: a length field of 1, 2, 4 or 8 bytes in big or
//! little byte order, then that many payload bytes.
//!
//! The echo server never re-encodes: it only needs to know where complete
//! frames end in what it has read ([`FrameFormat::scan`]) and to refuse a
//! declared length over the limit before buffering any of it. Clients (probe,
//! send, bench) use [`FrameFormat::encode`] and [`FrameFormat::decode`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Byte order of the length field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Network byte order.
    #[default]
    Big,
    Little,
}

impl std::fmt::Display for ByteOrder {
    /// The config spelling: `big` or `little`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ByteOrder::Big => "big",
            ByteOrder::Little => "little",
        })
    }
}

/// How frames are delimited on one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    /// Length field width in bytes: 1, 2, 4 or 8.
    pub width: u8,
    pub order: ByteOrder,
    /// Largest payload a frame may declare.
    pub max_frame: u64,
}

/// A frame that breaks the service's rules; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("declared frame length {declared} exceeds max_frame_bytes {max}")]
    TooLarge { declared: u64, max: u64 },
}

/// What [`FrameFormat::scan`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Bytes at the front that form complete frames (headers included).
    pub complete: usize,
    /// How many frames those are.
    pub frames: u64,
    /// The header after them declared too much: echo `complete`, then close.
    pub error: Option<FrameError>,
}

impl FrameFormat {
    /// Largest length a `width`-byte field can hold.
    pub const fn max_expressible(width: u8) -> u64 {
        if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width as u32)) - 1
        }
    }

    pub fn header_len(&self) -> usize {
        self.width as usize
    }

    /// Reads the length field at the front of `h` (which holds at least `width` bytes).
    #[inline]
    pub fn read_len(&self, h: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        let w = self.width as usize;
        match self.order {
            ByteOrder::Big => {
                b[8 - w..].copy_from_slice(&h[..w]);
                u64::from_be_bytes(b)
            }
            ByteOrder::Little => {
                b[..w].copy_from_slice(&h[..w]);
                u64::from_le_bytes(b)
            }
        }
    }

    /// Finds the complete frames at the front of `buf`. Stops at the first
    /// header that declares more than `max_frame`, before any of that payload
    /// is needed, so an oversized declaration never costs memory.
    #[inline]
    pub fn scan(&self, buf: &[u8]) -> Scan {
        let w = self.width as usize;
        let mut at = 0usize;
        let mut frames = 0u64;
        while buf.len() - at >= w {
            let len = self.read_len(&buf[at..]);
            if len > self.max_frame {
                let error = Some(FrameError::TooLarge {
                    declared: len,
                    max: self.max_frame,
                });
                return Scan {
                    complete: at,
                    frames,
                    error,
                };
            }
            // Compared as u64 so that no declared length (up to u64::MAX with
            // an 8-byte field) can overflow the position arithmetic.
            if len > (buf.len() - at - w) as u64 {
                break;
            }
            at += w + len as usize;
            frames += 1;
        }
        Scan {
            complete: at,
            frames,
            error: None,
        }
    }

    /// Appends one frame carrying `payload`. Panics if the payload is longer
    /// than the length field can express (callers check sizes up front).
    pub fn encode(&self, payload: &[u8], out: &mut BytesMut) {
        let len = payload.len() as u64;
        assert!(
            len <= Self::max_expressible(self.width),
            "payload too long for a {}-byte length field",
            self.width
        );
        let w = self.width as usize;
        out.reserve(w + payload.len());
        match self.order {
            ByteOrder::Big => out.put_slice(&len.to_be_bytes()[8 - w..]),
            ByteOrder::Little => out.put_slice(&len.to_le_bytes()[..w]),
        }
        out.put_slice(payload);
    }

    /// Takes one complete frame's payload off the front of `buf`, if there is one.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let w = self.width as usize;
        if buf.len() < w {
            return Ok(None);
        }
        let len = self.read_len(buf);
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                declared: len,
                max: self.max_frame,
            });
        }
        if len > (buf.len() - w) as u64 {
            return Ok(None);
        }
        buf.advance(w);
        Ok(Some(buf.split_to(len as usize).freeze()))
    }
}

/// What one connection echoes for a byte stream, see [`FrameFormat::replay`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// Bytes written back: every complete frame, headers included, in order.
    pub echoed: Vec<u8>,
    pub frames: u64,
    /// The oversized header that closed the connection, if any.
    pub error: Option<FrameError>,
    /// Bytes of an incomplete frame still buffered at the end.
    pub pending: usize,
    /// Most bytes held after a read was consumed: the per-connection memory bound.
    pub peak_pending: usize,
}

impl FrameFormat {
    /// A model of the echo server's per-read steps (`tcp_conn` does the same
    /// around its socket: append what was read, [`scan`](Self::scan), write
    /// back the complete prefix, keep the rest; stop at an oversized header)
    /// over `chunks` as if each were one read. Pure, so property tests, the
    /// fuzz target and its corpus check the framing arithmetic (`scan`, which
    /// the server calls itself) without sockets; the server's own loop is
    /// covered by the integration tests against the binary.
    pub fn replay<'a>(&self, chunks: impl IntoIterator<Item = &'a [u8]>) -> Replay {
        let mut buf = BytesMut::new();
        let mut r = Replay::default();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let scan = self.scan(&buf);
            r.echoed.extend_from_slice(&buf[..scan.complete]);
            r.frames += scan.frames;
            buf.advance(scan.complete);
            if scan.error.is_some() {
                r.error = scan.error;
                break;
            }
            r.peak_pending = r.peak_pending.max(buf.len());
        }
        r.pending = buf.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(width: u8, order: ByteOrder) -> FrameFormat {
        FrameFormat {
            width,
            order,
            max_frame: 1000,
        }
    }

    #[test]
    fn encode_then_decode_every_width_and_order() {
        for width in [1, 2, 4, 8] {
            for order in [ByteOrder::Big, ByteOrder::Little] {
                let f = fmt(width, order);
                let mut b = BytesMut::new();
                f.encode(b"hello", &mut b);
                f.encode(b"", &mut b);
                assert_eq!(b.len(), 2 * width as usize + 5);
                assert_eq!(
                    f.scan(&b),
                    Scan {
                        complete: b.len(),
                        frames: 2,
                        error: None
                    }
                );
                assert_eq!(&f.decode(&mut b).unwrap().unwrap()[..], b"hello");
                assert_eq!(&f.decode(&mut b).unwrap().unwrap()[..], b"");
                assert!(b.is_empty());
            }
        }
    }

    #[test]
    fn big_endian_is_network_order() {
        let mut b = BytesMut::new();
        fmt(4, ByteOrder::Big).encode(&[7; 258], &mut b);
        assert_eq!(&b[..4], &[0, 0, 1, 2]);
    }

    #[test]
    fn oversize_fails_on_the_header_alone() {
        let f = fmt(4, ByteOrder::Big);
        let mut b = BytesMut::new();
        f.encode(b"ok", &mut b);
        b.extend_from_slice(&1001u32.to_be_bytes());
        let s = f.scan(&b);
        assert_eq!((s.complete, s.frames), (6, 1));
        assert_eq!(
            s.error,
            Some(FrameError::TooLarge {
                declared: 1001,
                max: 1000
            })
        );
        assert_eq!(FrameFormat::max_expressible(2), 65535);
        assert_eq!(FrameFormat::max_expressible(8), u64::MAX);
    }
}
