//! The operator's tools, built into the same binary: `probe` (health check),
//! `send` and `listen` (poke and watch unicast, broadcast and multicast), and
//! `bench` (load generator). They share URL parsing and the frame format.

pub mod bench;
mod bench_msg;
mod bench_report;
mod bench_tcp;
mod bench_udp;
pub mod listen;
pub mod probe;
pub mod send;

use std::net::SocketAddr;

use anyhow::{Result, bail};
use clap::Args;

use crate::frame::{ByteOrder, FrameFormat};

/// Transport of a target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// `tcp://host:port` or `udp://host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Target> {
        let (proto, rest) = match s.split_once("://") {
            Some(("tcp", rest)) => (Proto::Tcp, rest),
            Some(("udp", rest)) => (Proto::Udp, rest),
            _ => bail!("{s:?}: expected tcp://host:port or udp://host:port"),
        };
        let addr = crate::config::parse_socket_addr(rest.trim_end_matches('/'))
            .map_err(anyhow::Error::msg)?;
        Ok(Target { proto, addr })
    }
}

/// How frames are delimited on the TCP service being talked to.
#[derive(Debug, Clone, Copy, Args)]
pub struct FrameArgs {
    /// Length field width of the service: 1, 2, 4 or 8.
    #[arg(long, default_value_t = 4, value_parser = parse_width)]
    pub length_field_bytes: u8,
    /// Byte order of the length field.
    #[arg(long, default_value = "big", value_parser = parse_order)]
    pub byte_order: ByteOrder,
}

fn parse_width(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(w @ (1 | 2 | 4 | 8)) => Ok(w),
        _ => Err("expected 1, 2, 4 or 8".into()),
    }
}

fn parse_order(s: &str) -> Result<ByteOrder, String> {
    match s {
        "big" => Ok(ByteOrder::Big),
        "little" => Ok(ByteOrder::Little),
        _ => Err("expected big or little".into()),
    }
}

impl FrameArgs {
    pub fn format(&self, max_frame: u64) -> FrameFormat {
        FrameFormat {
            width: self.length_field_bytes,
            order: self.byte_order,
            max_frame: max_frame.min(FrameFormat::max_expressible(self.length_field_bytes)),
        }
    }
}

/// `humantime` durations as clap values.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}
