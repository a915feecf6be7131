//! What every kind of service implements, so that the rest of the crate can
//! iterate over the kinds instead of naming them: [`Kind`] on a kind's config
//! struct (its `[[section]]`, validation, how `check` describes it, how it
//! binds) and [`Service`] on what it binds (address, read-back, run). The
//! list of kinds itself is the `kinds!` line in `services/mod.rs`; from it
//! come [`super::Spec`], [`super::Bound`] and [`for_each_kind`]'s visits,
//! which config parsing, validation, `check` and the supervisor loop over.

use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ServiceCtx;
use crate::config::validate::{Claim, Issues, Rules};
use crate::config::{Config, SocketOptions};
use crate::net::{Applied, Role};

/// A kind of service, implemented by its config struct (one `[[SECTION]]` table).
pub trait Kind:
    Clone + PartialEq + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    /// The config section (`[[SECTION]]`), also the kind's name in messages and `check`.
    const SECTION: &'static str;
    /// What its socket is for: which socket options and defaults apply.
    const ROLE: Role;
    /// Services of this kind share their port with each other on purpose
    /// (multicast listeners, one group each), so their claims never clash.
    const SHARES_PORT: bool = false;
    /// What [`Kind::bind`] returns.
    type Bound: Service<Config = Self>;

    /// The config's services of this kind, in file order.
    fn of(cfg: &Config) -> &[Self];
    /// The same, to fill in while parsing.
    fn of_mut(cfg: &mut Config) -> &mut Vec<Self>;
    /// The service's `name`.
    fn name(&self) -> &str;
    /// Its `[SECTION.socket]` table.
    fn socket(&self) -> &SocketOptions;
    /// The address whose family decides which socket options apply.
    fn family_ip(&self) -> IpAddr;
    /// The per-kind rules (ranges, combinations), the `index`-th of its kind.
    fn validate(&self, index: usize, rules: &Rules, out: &mut Issues);
    /// The protocol addresses it takes, for the no-overlap rule.
    fn claims(&self) -> Vec<Claim>;
    /// Its entry in `{services}` at its longest (for the 512-byte template rule).
    fn directory_entry(&self) -> String;
    /// `check`'s one-line summary.
    fn summary(&self) -> String;
    /// `check --bind`'s remarks on what was bound.
    fn notes(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The key (of the ones that are not socket options) whose change from
    /// `self` to `new` needs a new socket, e.g. `listen`.
    fn address_change(&self, new: &Self) -> Option<&'static str>;
    /// The address it binds, when it names one (reload closes an old socket
    /// on it just before binding the replacement).
    fn bind_addr(&self) -> Option<SocketAddr>;
    /// Fails when another program holds the address (see [`crate::net::tcp_address_free`]).
    fn address_free(&self) -> Result<()> {
        Ok(())
    }
    /// `check --print`'s table of it, every default filled in.
    fn effective(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }
    /// How many sockets `run` binds for it with `workers` runtime threads: a
    /// udp_echo's set on Linux (`net::reuseport_udp`), one for the others.
    fn sockets(&self, _workers: usize) -> usize {
        1
    }
    /// The faults and journal size its file gives it (`[SECTION.faults]`,
    /// `journal`): the supervisor's starting point for its live fixture.
    fn fixture(&self) -> (crate::faults::Faults, usize);
    /// Creates and binds its sockets.
    fn bind(&self) -> Result<Self::Bound>;
}

/// A bound service of some kind, ready to run.
pub trait Service: Clone + Send + Sync + 'static {
    type Config: Kind;
    /// The address the socket is bound to (port 0 resolved).
    fn local_addr(&self) -> SocketAddr;
    /// How the service is reached, for `ready`, `{services}` and `/services`.
    fn url(&self) -> String;
    /// Requested and effective socket options, read back from the kernel.
    fn report(&self) -> Vec<Applied>;
    /// Its socket, for options applied in place on reload.
    fn sock(&self) -> socket2::SockRef<'_>;
    /// Every socket it receives on (a udp_echo's set): options applied in
    /// place on reload reach each.
    fn socks(&self) -> Vec<socket2::SockRef<'_>> {
        vec![self.sock()]
    }
    /// The config it runs with.
    fn cfg(&self) -> &Self::Config;
    /// The same socket under a new config.
    fn with_config(&self, cfg: &Self::Config) -> Self;
    /// Multicast groups joined, each as `group on interface [from source]`.
    fn groups(&self) -> Vec<String> {
        Vec::new()
    }
    /// Serves until `ctx.stop`, then finishes in-flight work.
    fn run(self, ctx: ServiceCtx) -> impl Future<Output = Result<()>> + Send;
}

/// Something done once per kind ([`for_each_kind`]): the way generic code
/// reaches every kind's type, e.g. to parse `[[K::SECTION]]` as `K`.
pub trait KindVisitor {
    fn visit<K: Kind>(&mut self);
}

#[cfg(test)]
mod tests {
    use super::super::{SECTIONS, Spec};

    /// Every kind in the list is parsed from its `[[section]]`: the shipped
    /// config has one service of each, and each comes back as its kind.
    #[test]
    fn every_listed_kind_parses_from_its_section() {
        let cfg = crate::config::parse(crate::config::SHIPPED, "config.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = Spec::all(&cfg).iter().map(Spec::kind).collect();
        for section in SECTIONS {
            assert!(kinds.contains(section), "{section} missing from {kinds:?}");
        }
        let e = crate::config::parse("[[tcp_echoo]]\nname = \"a\"\n", "t.toml").unwrap_err();
        let msgs: Vec<&str> = e.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("expected one of [daemon], [admin], [[tcp_echo]], [[udp_echo]], [[broadcast]], [[multicast]]")
                && m.ends_with("did you mean `tcp_echo`?")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains(
                "add at least one [[tcp_echo]], [[udp_echo]], [[broadcast]] or [[multicast]] table"
            )),
            "{msgs:?}"
        );
    }
}
