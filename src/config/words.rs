//! Config errors in plain words. serde speaks Rust (`invalid type: integer
//! `-1`, expected u32`); `plain` turns such a message, the key it is about
//! and the value as written into "`backlog` must be a whole number from 1 to
//! 65535, without quotes; found -1". Unknown keys, sections and enum values
//! get a "did you mean" from the names serde lists (edit distance).

/// Keys whose allowed range is narrower than their type's: the same limits
/// `validate` enforces, so a type error and a range error say the same thing.
/// The `[*.socket]` keys' ranges are in the option table (`net::options`).
const RANGES: &[(&str, i128, i128)] = &[
    ("port", 1, 65535),
    ("max_connections", 1, u32::MAX as i128),
    ("max_datagram_bytes", 1, crate::MAX_UDP_PAYLOAD as i128),
    ("retries", 1, 127),
];

/// Keys written as a duration string.
const DURATIONS: &[&str] = &[
    "shutdown_timeout",
    "drain_timeout",
    "idle_timeout",
    "frame_timeout",
    "interval",
    "jitter",
    "linger",
    "idle",
];

/// "`key` must be a whole number from LO to HI, without quotes; found V".
pub fn whole_number(key: &str, lo: i128, hi: i128, found: &str) -> String {
    format!("`{key}` must be a whole number from {lo} to {hi}, without quotes; found {found}")
}

/// The allowed range of an integer key: its own (see [`RANGES`]) or its type's.
fn range_of(key: &str, ty: &str) -> Option<(i128, i128)> {
    if let Some((_, lo, hi)) = RANGES.iter().find(|(k, _, _)| *k == key) {
        return Some((*lo, *hi));
    }
    if let Some(r) = crate::net::options::range(key) {
        return Some(r);
    }
    Some(match ty {
        "u8" => (0, u8::MAX as i128),
        "u16" => (0, u16::MAX as i128),
        "u32" => (0, u32::MAX as i128),
        "u64" | "usize" => (0, u64::MAX as i128),
        "i32" => (i32::MIN as i128, i32::MAX as i128),
        "i64" => (i64::MIN as i128, i64::MAX as i128),
        _ => return None,
    })
}

/// Rewrites a serde message about `key` (whose value reads `found` in the
/// file) in plain words; messages that already are (ours) get the key in front.
pub fn plain(message: &str, key: &str, found: &str) -> String {
    let found = shorten(found);
    if message.starts_with("unknown field") || key.is_empty() {
        return with_suggestion(message);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        let got = rest.split('`').nth(1).unwrap_or("");
        let hint = did_you_mean(got, expected.split('`').skip(1).step_by(2))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let expected = expected.strip_prefix("one of ").unwrap_or(expected);
        return format!("`{key}` must be {expected}; found {found}{hint}");
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((_, expected)) = rest.rsplit_once(", expected ")
    {
        return must_be(key, expected, &found);
    }
    if message.starts_with("missing field") {
        return message.to_string();
    }
    format!("`{key}`: {message}")
}

/// "`key` must be <what `expected` means>; found <found>".
fn must_be(key: &str, expected: &str, found: &str) -> String {
    let quoted = found.starts_with('"') || found.starts_with('\'');
    if key == "length_field_bytes" {
        return format!("`{key}` must be 1, 2, 4 or 8, without quotes; found {found}");
    }
    if let Some((lo, hi)) = range_of(key, expected) {
        return whole_number(key, lo, hi, found);
    }
    let what = match expected {
        "a boolean" => "true or false, without quotes".to_string(),
        "f32" | "f64" => "a number, without quotes".to_string(),
        "a string" | "a borrowed string" if DURATIONS.contains(&key) => {
            "a duration in quotes with a unit, e.g. \"250ms\" or \"5s\"".to_string()
        }
        "a string" | "a borrowed string" if ["listen", "destination", "bind"].contains(&key) => {
            "an address in quotes, e.g. \"127.0.0.1:7007\"".to_string()
        }
        "a string" | "a borrowed string" => "text in quotes".to_string(),
        "IP address" => "an IP address in quotes, e.g. \"239.255.0.1\" or \"ff02::1\"".to_string(),
        "a sequence" => "a list in brackets, e.g. [7, 9]".to_string(),
        e if e.starts_with("struct ") => "a table of keys, e.g. { key = value }".to_string(),
        e if quoted && e.starts_with('u') => format!("{e}, without quotes"),
        e => e.to_string(),
    };
    format!("`{key}` must be {what}; found {found}")
}

/// The value as written, cut to a readable length.
fn shorten(found: &str) -> String {
    let found = found.trim();
    if found.chars().count() > 40 {
        format!("{}...", found.chars().take(37).collect::<String>())
    } else {
        found.to_string()
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or variant) with
/// "; did you mean `a`?" when one of the listed names is close to `x`.
pub fn with_suggestion(message: &str) -> String {
    let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match names.split_first() {
        Some((got, known)) => match did_you_mean(got, known.iter().copied()) {
            Some(best) => format!("{message}; did you mean `{best}`?"),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// The name in `known` closest to `got`, if it is close enough to be a typo:
/// at most a third of its letters (and at least 1, at most 3) differ.
pub fn did_you_mean<'a>(got: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (distance(got, k), k))
        .filter(|(d, k)| *d > 0 && *d <= (k.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_in_plain_words() {
        assert_eq!(
            plain(
                "invalid type: integer `-1`, expected u32",
                "max_connections",
                "-1"
            ),
            "`max_connections` must be a whole number from 1 to 4294967295, without quotes; found -1"
        );
        assert_eq!(
            plain(
                "invalid type: string \"64\", expected i32",
                "backlog",
                "\"64\""
            ),
            "`backlog` must be a whole number from 1 to 65535, without quotes; found \"64\""
        );
        assert_eq!(
            plain(
                "invalid type: integer `5`, expected a string",
                "shutdown_timeout",
                "5"
            ),
            "`shutdown_timeout` must be a duration in quotes with a unit, e.g. \"250ms\" or \"5s\"; found 5"
        );
        assert_eq!(
            plain(
                "invalid type: integer `1`, expected a boolean",
                "nodelay",
                "1"
            ),
            "`nodelay` must be true or false, without quotes; found 1"
        );
    }

    #[test]
    fn suggestions_for_typos_only() {
        assert_eq!(
            did_you_mean("max_conections", ["name", "max_connections"]),
            Some("max_connections")
        );
        assert_eq!(did_you_mean("colour", ["name", "listen"]), None);
        assert_eq!(
            plain(
                "unknown variant `bigg`, expected `big` or `little`",
                "byte_order",
                "\"bigg\""
            ),
            "`byte_order` must be `big` or `little`; found \"bigg\"; did you mean `big`?"
        );
        assert_eq!(
            with_suggestion("unknown field `nodelai`, expected one of `nodelay`, `ttl`"),
            "unknown field `nodelai`, expected one of `nodelay`, `ttl`; did you mean `nodelay`?"
        );
    }
}
