//! Payload templates of the broadcast announcer: `{field}` placeholders filled
//! per datagram, `{{` and `}}` for literal braces. Parsed once (validation
//! rejects unknown fields and payloads that could render over the limit),
//! rendered on every send.

use std::fmt::Write;

/// Largest announcement we send: fits one unfragmented datagram on any link.
pub const MAX_PAYLOAD_BYTES: usize = 512;

/// Placeholders a template may use.
pub const FIELDS: &str = "{name}, {hostname}, {seq}, {uptime_s}, {pid}, {services}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Hostname,
    Seq,
    UptimeS,
    Pid,
    Services,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
    pub seq: u64,
    pub uptime_s: u64,
    pub pid: u32,
    /// The daemon's other services, as `name=proto://addr` separated by spaces.
    pub services: &'a str,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "unclosed `{{{name}` in template; close it with `}}` (fields: {FIELDS}) or write {{{{ for a literal brace"
                        ));
                    }
                    let field = match name.as_str() {
                        "name" => Field::Name,
                        "hostname" => Field::Hostname,
                        "seq" => Field::Seq,
                        "uptime_s" => Field::UptimeS,
                        "pid" => Field::Pid,
                        "services" => Field::Services,
                        _ => {
                            return Err(format!(
                                "unknown template field {{{name}}}; the fields are {FIELDS} (write {{{{ for a literal brace)"
                            ));
                        }
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` in template; write }}}} for a literal brace (fields: {FIELDS})"
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    pub fn render(&self, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            let _ = match p {
                Piece::Lit(s) => out.write_str(s),
                Piece::Field(Field::Name) => out.write_str(v.name),
                Piece::Field(Field::Hostname) => out.write_str(v.hostname),
                Piece::Field(Field::Seq) => write!(out, "{}", v.seq),
                Piece::Field(Field::UptimeS) => write!(out, "{}", v.uptime_s),
                Piece::Field(Field::Pid) => write!(out, "{}", v.pid),
                Piece::Field(Field::Services) => out.write_str(v.services),
            };
        }
        out
    }

    /// The longest this template can render to: numbers at their widest and a
    /// 64-byte host name (HOST_NAME_MAX on Linux).
    pub fn max_len(&self, name: &str, services: &str) -> usize {
        let long_host = "h".repeat(64);
        self.render(&Vars {
            name,
            hostname: &long_host,
            seq: u64::MAX,
            uptime_s: u64::MAX,
            pid: u32::MAX,
            services,
        })
        .len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_escapes() {
        let t =
            Template::parse("{{x}} {name} seq={seq} pid={pid} up={uptime_s} {services}").unwrap();
        let s = t.render(&Vars {
            name: "a",
            hostname: "h",
            seq: 3,
            uptime_s: 9,
            pid: 42,
            services: "e=tcp://1",
        });
        assert_eq!(s, "{x} a seq=3 pid=42 up=9 e=tcp://1");
    }

    #[test]
    fn rejects_unknown_and_unmatched() {
        assert!(Template::parse("{nope}").unwrap_err().contains("{nope}"));
        assert!(Template::parse("a}b").is_err());
        assert!(Template::parse("x {seq").unwrap_err().contains("unclosed"));
    }
}
