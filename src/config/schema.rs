//! The typed shape of `config.toml`: one struct per table, parsed by serde with
//! `deny_unknown_fields`, defaults as named functions. Nothing here touches the
//! network; `validate/` checks what types alone cannot, and `crate::net` turns a
//! [`SocketOptions`] into socket2 calls.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;
use crate::acl::Cidr;
use crate::frame::ByteOrder;

/// The whole file, after parsing. Services keep their file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub admin: Option<AdminConfig>,
    pub tcp_echo: Vec<TcpEchoConfig>,
    pub udp_echo: Vec<UdpEchoConfig>,
    pub broadcast: Vec<BroadcastConfig>,
    pub multicast: Vec<MulticastConfig>,
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Drain deadline after SIGTERM/SIGINT; connections still open then are
    /// closed (gracefully at a frame boundary, reset mid-frame). Default 5s.
    #[serde(default = "default_shutdown_timeout", with = "de::duration")]
    pub shutdown_timeout: Duration,
    /// How long connections of a service a reload removed or moved keep being
    /// served under their old settings before they are closed. Default 30s.
    #[serde(default = "default_drain_timeout", with = "de::duration")]
    pub drain_timeout: Duration,
    /// Reload when the config file changes, not only on SIGHUP. Default true.
    #[serde(default = "default_true")]
    pub watch_config: bool,
    /// Write the process id here at start (removed at exit), so `netservd reload`
    /// signals exactly this daemon. Read at start only. Default: none.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Threads of the async runtime, and sockets per UDP echo service on
    /// Linux (one SO_REUSEPORT socket each). Read at start only. Default:
    /// the CPUs this process may run on (affinity and cgroup quota honoured).
    #[serde(default = "default_workers")]
    pub workers: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_timeout: default_shutdown_timeout(),
            drain_timeout: default_drain_timeout(),
            watch_config: true,
            pid_file: None,
            workers: default_workers(),
        }
    }
}

/// `[admin]`: the HTTP endpoint for health and metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/healthz`, `/metrics`, `/services`).
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// A client must send a request's whole header within this, counted from
    /// when the connection starts waiting for a request (also between
    /// keep-alive requests). Default 5s.
    #[serde(default = "default_admin_header_read_timeout", with = "de::duration")]
    pub header_read_timeout: Duration,
    /// Close a connection on which no byte moves either way for this long
    /// (a client that stops reading its response). Default 30s.
    #[serde(default = "default_admin_idle_timeout", with = "de::duration")]
    pub idle_timeout: Duration,
    /// Admin connections open at once; one more is closed right after accept
    /// (`drops{service="admin",reason="connection_limit"}`). Default 64.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: u32,
    /// Largest request body accepted (413 above; a body without a length: 411). Default 4096.
    #[serde(default = "default_admin_max_body_bytes")]
    pub max_body_bytes: u64,
    /// File holding a bearer token: every request but `GET /healthz` must send
    /// `Authorization: Bearer <token>` (401 otherwise). Default: no token.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// Allow the write endpoints of faults and journal (`PUT`/`DELETE
    /// /services/NAME/faults`, `DELETE /services/NAME/journal`); 403 otherwise. Default false.
    #[serde(default)]
    pub control: bool,
}

impl AdminConfig {
    /// An admin endpoint on `listen` with every other key at its default.
    pub fn on(listen: SocketAddr) -> AdminConfig {
        AdminConfig {
            listen,
            header_read_timeout: default_admin_header_read_timeout(),
            idle_timeout: default_admin_idle_timeout(),
            max_connections: default_admin_max_connections(),
            max_body_bytes: default_admin_max_body_bytes(),
            token_file: None,
            control: false,
        }
    }
}

fn default_admin_header_read_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_admin_idle_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_admin_max_connections() -> u32 {
    64
}
fn default_admin_max_body_bytes() -> u64 {
    4096
}

/// `[[tcp_echo]]`: length-prefixed frames echoed back unchanged.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpEchoConfig {
    /// Unique service name: identity for reload, logs and metrics.
    pub name: String,
    /// Address to listen on (`ip:port`, `[ipv6]:port` or `host:port`).
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Width of the length field in bytes: 1, 2, 4 or 8. Default 4.
    #[serde(default = "default_length_field_bytes")]
    pub length_field_bytes: u8,
    /// Byte order of the length field. Default big (network byte order).
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Largest payload a frame may declare; a larger one closes the connection.
    /// Default 65536, or the most the length field can express if that is less.
    #[serde(default)]
    pub max_frame_bytes: Option<u64>,
    /// Concurrent connections; further clients wait in the listen backlog. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Close a connection that sends nothing for this long. Default 60s.
    #[serde(default = "default_idle_timeout", with = "de::duration")]
    pub idle_timeout: Duration,
    /// A started frame must complete within this. Default 10s.
    #[serde(default = "default_frame_timeout", with = "de::duration")]
    pub frame_timeout: Duration,
    /// Open connections per source (IPv4 address or IPv6 prefix); `0` = unlimited. Default 64.
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: u32,
    /// New connections per second per source. Default: no limit.
    #[serde(default)]
    pub max_connections_per_second_per_source: Option<u32>,
    /// IPv6 sources are counted by this many leading bits. Default 64.
    #[serde(default = "default_source_prefix_v6")]
    pub source_prefix_v6: u8,
    /// Sources allowed (CIDR blocks); empty = everyone. See `acl.rs`.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Sources refused (CIDR blocks); wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// Socket options applied before bind/listen.
    /// Faults injected for tests (`faults.rs`); absent = none. See README "Testing your client against faults".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::faults::TcpFaults>,
    /// Recent messages kept for `GET /services/NAME/journal`; 0 = off (the default, so
    /// a service pays nothing for it), at most 65536.
    #[serde(default)]
    pub journal: usize,
    #[serde(default)]
    pub socket: SocketOptions,
}

/// `[[udp_echo]]`: every datagram goes back to its sender.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpEchoConfig {
    pub name: String,
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Larger datagrams are dropped and counted, never echoed truncated. Default 65507.
    #[serde(default = "default_max_datagram_bytes")]
    pub max_datagram_bytes: usize,
    /// Per-source reply rate limit (token bucket). Default: none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Source ports that never get a reply (loop and reflection guard).
    /// Default: 7, 9, 13, 17, 19, 37, 53, 123, 161, 1900, 11211.
    #[serde(default = "default_blocked_source_ports")]
    pub blocked_source_ports: Vec<u16>,
    /// `sockperf`: clear sockperf's client flag in replies so its client accepts them.
    #[serde(default)]
    pub compat: Compat,
    /// Sources allowed (CIDR blocks); empty = everyone. See `acl.rs`.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Sources refused (CIDR blocks); wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// Linux: a batch's equal-sized replies to one source leave as one UDP
    /// GSO send (`udp_mmsg.rs`). `false`: one datagram per send. Default true.
    #[serde(default = "default_true")]
    pub gso: bool,
    /// Faults injected for tests (`faults.rs`); absent = none. See README "Testing your client against faults".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::faults::UdpFaults>,
    /// Recent messages kept for `GET /services/NAME/journal`; 0 = off (the default, so
    /// a service pays nothing for it), at most 65536.
    #[serde(default)]
    pub journal: usize,
    #[serde(default)]
    pub socket: SocketOptions,
}

/// Reply compatibility mode for echo services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// Replies are the request, byte for byte.
    #[default]
    None,
    /// Replies clear bit 0 of byte 9 (sockperf's client flag).
    Sockperf,
}

/// A token bucket per source address.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained replies per second per source address.
    pub per_source: u32,
    /// Bucket size: replies a source may get in a burst. Default: per_source.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Sources tracked at once; the least recently seen is evicted. Default 4096.
    #[serde(default = "default_rate_limit_sources")]
    pub max_sources: usize,
}

/// `[[broadcast]]`: a datagram sent on a schedule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastConfig {
    pub name: String,
    /// Where to send: a broadcast address or a multicast group, with port.
    #[serde(deserialize_with = "de::socket_addr")]
    pub destination: SocketAddr,
    /// Local address (and so the interface) to send from. Default: wildcard, port 0.
    #[serde(default, deserialize_with = "de::opt_socket_addr")]
    pub bind: Option<SocketAddr>,
    /// Time between datagrams. Default 5s.
    #[serde(default = "default_interval", with = "de::duration")]
    pub interval: Duration,
    /// Each interval is randomised by up to this much either way. Default 500ms.
    #[serde(default = "default_jitter", with = "de::duration")]
    pub jitter: Duration,
    /// Template of each datagram; see `template.rs` for the fields.
    #[serde(default = "default_payload")]
    pub payload: String,
    /// Template sent once on shutdown or removal; empty = none.
    #[serde(default = "default_goodbye")]
    pub goodbye: String,
    /// Faults injected for tests (`faults.rs`); absent = none. See README "Testing your client against faults".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::faults::BroadcastFaults>,
    /// Recent messages kept for `GET /services/NAME/journal`; 0 = off (the default, so
    /// a service pays nothing for it), at most 65536.
    #[serde(default)]
    pub journal: usize,
    #[serde(default)]
    pub socket: SocketOptions,
}

/// `[[multicast]]`: joins a group and receives (optionally echoes).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MulticastConfig {
    pub name: String,
    /// Group address: IPv4 224.0.0.0/4 or IPv6 ff00::/8.
    pub group: IpAddr,
    pub port: u16,
    /// IPv4: a local address; IPv6: an interface name or index. Default: the kernel picks.
    #[serde(default)]
    pub interface: Option<String>,
    /// Source-specific join: only datagrams from this sender.
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// `none` or `echo` (send each datagram back to its sender, unicast).
    #[serde(default)]
    pub reply: Reply,
    #[serde(default)]
    pub compat: Compat,
    /// Sources allowed (CIDR blocks); empty = everyone. See `acl.rs`.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Sources refused (CIDR blocks); wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// Faults injected for tests (`faults.rs`); absent = none. See README "Testing your client against faults".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::faults::UdpFaults>,
    /// Recent messages kept for `GET /services/NAME/journal`; 0 = off (the default, so
    /// a service pays nothing for it), at most 65536.
    #[serde(default)]
    pub journal: usize,
    #[serde(default)]
    pub socket: SocketOptions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    #[default]
    None,
    Echo,
}

/// `[*.socket]`: options applied with socket2 before bind. `None` = OS default.
/// Which keys apply to which service kind, and how each is set and read
/// back, is the option table in `net/options.rs` (one entry per field).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketOptions {
    /// SO_REUSEADDR (SO_EXCLUSIVEADDRUSE is used instead on Windows). Default true.
    pub reuse_address: Option<bool>,
    /// SO_REUSEPORT (Unix only).
    pub reuse_port: Option<bool>,
    /// TCP_NODELAY. Default true for TCP.
    pub nodelay: Option<bool>,
    /// SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT, or `false`.
    pub keepalive: Option<de::Keepalive>,
    /// SO_LINGER; "0s" resets (RST) on close.
    #[serde(default, with = "de::opt_duration")]
    pub linger: Option<Duration>,
    /// SO_RCVBUF request (Linux doubles it; limits clamp it).
    pub recv_buffer_bytes: Option<usize>,
    /// SO_SNDBUF request.
    pub send_buffer_bytes: Option<usize>,
    /// listen() backlog. Default 1024.
    pub backlog: Option<i32>,
    /// IP_TTL / IPV6_UNICAST_HOPS.
    pub ttl: Option<u32>,
    /// IPV6_V6ONLY (IPv6 addresses only).
    pub only_v6: Option<bool>,
    /// SO_OOBINLINE. Default true for TCP.
    pub oob_inline: Option<bool>,
    /// TCP_MAXSEG (Unix only).
    pub mss: Option<u32>,
    /// SO_RCVLOWAT (Unix only).
    pub recv_low_water: Option<u32>,
    /// IP_TOS / IPV6_TCLASS.
    pub tos: Option<u32>,
    /// SO_DONTROUTE (Unix only).
    pub dont_route: Option<bool>,
    /// SO_PRIORITY (Linux only): 0..=6, the queueing priority of the packets sent.
    pub priority: Option<u32>,
    /// SO_BINDTODEVICE (Linux only).
    pub bind_device: Option<String>,
    /// TCP_FASTOPEN queue length (Linux only).
    pub fastopen: Option<u32>,
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS.
    pub multicast_ttl: Option<u32>,
    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP.
    pub multicast_loop: Option<bool>,
    /// IP_MULTICAST_ALL / IPV6_MULTICAST_ALL (Linux only). Default false for multicast
    /// listeners, so two listeners on one port each get only their own group.
    pub multicast_all: Option<bool>,
}

impl TcpEchoConfig {
    /// `max_frame_bytes`, or its default: 65536, capped by what the length field can express.
    pub fn frame_limit(&self) -> u64 {
        self.max_frame_bytes.unwrap_or_else(|| {
            default_max_frame_bytes().min(crate::frame::FrameFormat::max_expressible(
                self.length_field_bytes,
            ))
        })
    }
}

impl SocketOptions {
    /// The keys this table sets, with their values as written, in the order
    /// of the option table (`net::options`): what `check` lists.
    pub fn requested(&self) -> Vec<(&'static str, String)> {
        crate::net::options::requested(self)
    }
}

fn default_true() -> bool {
    true
}
/// Largest `[daemon] workers` accepted (and cap of the default).
pub const MAX_WORKERS: usize = 1024;
// Issue 15: `std::thread::available_parallelism` reads sched_getaffinity and
// the cgroup v1/v2 CPU quota on Linux, so a container limited to 2 CPUs gets 2.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(5)
}
// Reload (issue 10): retired connections are served this long.
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_length_field_bytes() -> u8 {
    4
}
pub(crate) fn default_max_frame_bytes() -> u64 {
    65536
}
fn default_max_connections() -> u32 {
    1024
}
fn default_max_connections_per_source() -> u32 {
    64
}
fn default_source_prefix_v6() -> u8 {
    64
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_frame_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_datagram_bytes() -> usize {
    crate::MAX_UDP_PAYLOAD
}
fn default_rate_limit_sources() -> usize {
    4096
}
/// Classic UDP services that answer anything (echo, discard, daytime, qotd,
/// chargen, time) and the usual reflection amplifiers (DNS, NTP, SNMP, SSDP,
/// memcached): a datagram "from" these ports is a loop or a spoof.
pub const DEFAULT_BLOCKED_SOURCE_PORTS: [u16; 11] =
    [7, 9, 13, 17, 19, 37, 53, 123, 161, 1900, 11211];
fn default_blocked_source_ports() -> Vec<u16> {
    DEFAULT_BLOCKED_SOURCE_PORTS.to_vec()
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_jitter() -> Duration {
    Duration::from_millis(500)
}
fn default_payload() -> String {
    "netservd {name} host={hostname} seq={seq} uptime={uptime_s}".into()
}
fn default_goodbye() -> String {
    "netservd {name} goodbye seq={seq}".into()
}
