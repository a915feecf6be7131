//! The option table against what it replaced and what documents it: each key
//! once, one descriptor per serde field, the reload scopes the old SCOPES
//! table gave, and the README's "Socket options" table row by row.

use super::*;

fn config_keys() -> Vec<&'static str> {
    OPTIONS.iter().filter(|d| d.config).map(|d| d.key).collect()
}

#[test]
fn each_key_appears_once() {
    for d in OPTIONS {
        let n = OPTIONS.iter().filter(|e| e.key == d.key).count();
        assert_eq!(n, 1, "{} has {n} descriptors", d.key);
    }
}

/// The serde struct's field names, as serde lists them for an unknown key.
fn serde_fields() -> Vec<String> {
    let e = toml::from_str::<SocketOptions>("no_such_key = 1")
        .expect_err("deny_unknown_fields")
        .to_string();
    let list = e
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no field list in {e}"));
    list.split(',')
        .map(|f| f.trim().trim_matches('`').trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

#[test]
fn every_serde_field_has_a_descriptor_and_back() {
    let fields = serde_fields();
    assert!(fields.len() > 10, "{fields:?}");
    for f in &fields {
        assert!(
            find(f).is_some_and(|d| d.config),
            "SocketOptions.{f} has no descriptor in OPTIONS"
        );
    }
    for k in config_keys() {
        assert!(
            fields.iter().any(|f| f == k),
            "OPTIONS has {k}, which SocketOptions has no field for"
        );
    }
}

#[test]
fn a_table_with_every_key_set_reads_every_key() {
    let o: SocketOptions = toml::from_str(
        "reuse_address = true\nreuse_port = true\nnodelay = true\nkeepalive = true\n\
         linger = \"1s\"\nrecv_buffer_bytes = 1\nsend_buffer_bytes = 1\nbacklog = 1\nttl = 1\n\
         only_v6 = true\noob_inline = true\nmss = 100\nrecv_low_water = 1\ntos = 1\n\
         dont_route = true\npriority = 1\nbind_device = \"lo\"\nfastopen = 1\n\
         multicast_ttl = 1\nmulticast_loop = true\nmulticast_all = true\n",
    )
    .unwrap();
    let keys: Vec<_> = requested(&o).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, config_keys(), "a key set in the file is not read");
}

/// The SCOPES table net/change.rs had before the option table absorbed it:
/// (key, tcp listener, udp). Reload classifies as it did.
const BEFORE: &[(&str, Scope, Scope)] = &[
    ("reuse_address", Scope::Rebind, Scope::Rebind),
    ("reuse_port", Scope::Rebind, Scope::Rebind),
    ("only_v6", Scope::Rebind, Scope::Rebind),
    ("bind_device", Scope::Rebind, Scope::Rebind),
    ("fastopen", Scope::Rebind, Scope::Rebind),
    ("multicast_all", Scope::Rebind, Scope::Rebind),
    ("backlog", Scope::Relisten, Scope::Rebind),
    ("nodelay", Scope::Accepted, Scope::Rebind),
    ("keepalive", Scope::Accepted, Scope::Rebind),
    ("linger", Scope::Accepted, Scope::Rebind),
    ("oob_inline", Scope::Accepted, Scope::Rebind),
    ("mss", Scope::Accepted, Scope::Rebind),
    ("recv_low_water", Scope::Accepted, Scope::Rebind),
    ("recv_buffer_bytes", Scope::Accepted, Scope::Live),
    ("send_buffer_bytes", Scope::Accepted, Scope::Live),
    ("tos", Scope::Accepted, Scope::Live),
    ("ttl", Scope::Accepted, Scope::Live),
    ("dont_route", Scope::Accepted, Scope::Live),
    ("multicast_ttl", Scope::Rebind, Scope::Live),
    ("multicast_loop", Scope::Rebind, Scope::Live),
];

#[test]
fn scopes_classify_as_before() {
    for &(key, tcp, udp) in BEFORE {
        let d = find(key).unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!((d.tcp, d.udp), (tcp, udp), "{key}");
        let backlog = if cfg!(target_os = "linux") {
            Scope::Relisten
        } else {
            Scope::Rebind
        };
        let want = if tcp == Scope::Relisten { backlog } else { tcp };
        assert_eq!(d.scope(Role::TcpListener), want, "{key}");
    }
    // The one added since: SO_PRIORITY is inherited by accepted sockets and
    // takes effect at once on UDP, like SO_DONTROUTE.
    let p = find("priority").unwrap();
    assert_eq!((p.tcp, p.udp), (Scope::Accepted, Scope::Live));
    let known: Vec<_> = OPTIONS
        .iter()
        .filter(|d| d.default_known())
        .map(|d| d.key)
        .collect();
    // Unsetting these is applied in place (we set their default); the rest
    // of the known-default keys rebind anyway.
    for k in ["nodelay", "oob_inline"] {
        assert!(known.contains(&k), "{k}: {known:?}");
    }
    for k in known {
        let d = find(k).unwrap();
        assert!(
            ["nodelay", "oob_inline"].contains(&k)
                || d.tcp == Scope::Rebind && d.udp == Scope::Rebind,
            "unsetting {k} would now be applied in place"
        );
    }
}

/// The README's "Socket options" rows: key -> cells after the key.
fn readme_rows() -> Vec<(String, Vec<String>)> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("\n### Socket options\n")
        .nth(1)
        .expect("README has a Socket options section");
    let section = section.split("\n#").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            (cells[0].trim_matches('`').to_string(), cells[1..].to_vec())
        })
        .collect()
}

#[test]
fn readme_table_matches_the_option_table() {
    let rows = readme_rows();
    for (key, _) in &rows {
        assert!(
            find(key).is_some_and(|d| d.config),
            "README row `{key}` is no option in OPTIONS"
        );
    }
    for d in OPTIONS.iter().filter(|d| d.config) {
        let applies = if d.v6_only {
            "IPv6 addresses".to_string()
        } else {
            d.kinds.words()
        };
        let want = [d.sockopt.to_string(), applies, reload_words(d)];
        let Some((_, cells)) = rows.iter().find(|(k, _)| k == d.key) else {
            panic!(
                "README Socket options has no row for `{}`; add: | `{}` | {} | {} | {} | ... |",
                d.key, d.key, want[0], want[1], want[2]
            );
        };
        assert_eq!(cells.len(), 4, "README row `{}`: {cells:?}", d.key);
        let got = [cells[0].clone(), cells[1].clone(), cells[2].clone()];
        assert_eq!(
            got, want,
            "README row `{}` (socket option, applies to, on reload)",
            d.key
        );
        let notes = &cells[3];
        for p in [Platform::Unix, Platform::Linux] {
            let says = notes.contains(&format!("{} only", p.name().unwrap()));
            assert_eq!(
                says,
                d.platform == p,
                "README row `{}`: notes should say \"{} only\" exactly when the option is",
                d.key,
                p.name().unwrap()
            );
        }
    }
}

/// `apply_accepted` sets these without asking the socket's family.
#[test]
fn per_connection_options_are_tcp_and_family_free() {
    let per: Vec<_> = OPTIONS
        .iter()
        .filter(|d| d.per_connection)
        .map(|d| d.key)
        .collect();
    assert_eq!(per, ["nodelay", "keepalive"]);
    for d in OPTIONS.iter().filter(|d| d.per_connection) {
        assert!(
            !d.sockopt.contains(" / "),
            "{}: has a v4 and a v6 form",
            d.key
        );
        assert_eq!(d.kinds, KindSet::TCP, "{}", d.key);
    }
}
