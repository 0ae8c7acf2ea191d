//! A second reading of a validated `[service.http]` rule set, written from
//! its documentation rather than from `proxy::route`: the first rule whose
//! conditions all hold picks its pool, else the default pool; a list
//! condition holds when any item does; `ignore_case` compares paths
//! without ASCII case; hosts compare without case and without a port.
//! The fuzz targets check the router against it.

use halb::config::validate::{Condition, HttpConfig, HttpRule};
use http::{Request, header::HOST};
use regex::Regex;

pub struct Reference {
    rules: Vec<(Vec<Check>, bool, usize)>,
    default: usize,
}

enum Check {
    Plain(Condition),
    Regex(Regex),
}

impl Reference {
    /// Panics when a validated rule cannot be applied as written: a
    /// config the agent accepted must mean what it says.
    pub fn new(config: &HttpConfig) -> Reference {
        let pool = |name: &str| {
            config
                .pools
                .iter()
                .position(|p| p.name == name)
                .unwrap_or_else(|| {
                    panic!("validated rules name pool {name:?}, which is not defined")
                })
        };
        let rules = config
            .rules
            .iter()
            .map(|rule: &HttpRule| {
                assert!(
                    !rule.conditions.is_empty(),
                    "a validated rule has no condition"
                );
                let checks = rule
                    .conditions
                    .iter()
                    .map(|c| match c {
                        Condition::PathRegex(r) => {
                            let pattern = if rule.ignore_case {
                                format!("(?i){r}")
                            } else {
                                r.clone()
                            };
                            Check::Regex(Regex::new(&pattern).unwrap_or_else(|e| {
                                panic!("validated path_regex {pattern:?} does not compile: {e}")
                            }))
                        }
                        other => Check::Plain(other.clone()),
                    })
                    .collect();
                (checks, rule.ignore_case, pool(&rule.pool))
            })
            .collect();
        Reference {
            rules,
            default: pool(&config.default_pool),
        }
    }

    /// The pool for `request`, or None where the documentation leaves the
    /// answer open (a Host value of no clear shape).
    pub fn pick<B>(&self, request: &Request<B>) -> Option<usize> {
        for (checks, ignore_case, pool) in &self.rules {
            let mut unclear = false;
            let mut failed = false;
            for check in checks {
                match holds(check, *ignore_case, request) {
                    Some(true) => {}
                    Some(false) => failed = true,
                    None => unclear = true,
                }
            }
            if failed {
                continue;
            }
            if unclear {
                return None;
            }
            return Some(*pool);
        }
        Some(self.default)
    }
}

fn holds<B>(check: &Check, ignore_case: bool, request: &Request<B>) -> Option<bool> {
    let path = request.uri().path();
    let same = |a: &[u8], b: &[u8]| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let condition = match check {
        // The router lowers the path for a case-blind regex; so does this.
        Check::Regex(r) if ignore_case => return Some(r.is_match(&path.to_ascii_lowercase())),
        Check::Regex(r) => return Some(r.is_match(path)),
        Check::Plain(c) => c,
    };
    Some(match condition {
        Condition::PathBegins(list) => list
            .iter()
            .any(|p| path.len() >= p.len() && same(&path.as_bytes()[..p.len()], p.as_bytes())),
        Condition::PathEnds(list) => list.iter().any(|p| {
            path.len() >= p.len() && same(&path.as_bytes()[path.len() - p.len()..], p.as_bytes())
        }),
        Condition::Host(list) => {
            let host = request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| request.uri().host())
                .unwrap_or("");
            let name = without_port(host)?;
            list.iter().any(|h| h.eq_ignore_ascii_case(name))
        }
        Condition::Method(list) => list.iter().any(|m| m == request.method().as_str()),
        // A name that is no valid header name is carried by no request.
        Condition::Header { name, contains } => request.headers().iter().any(|(n, value)| {
            n.as_str().eq_ignore_ascii_case(name)
                && contains
                    .as_ref()
                    .is_none_or(|text| value.to_str().is_ok_and(|v| v.contains(text.as_str())))
        }),
        Condition::PathRegex(_) => unreachable!("compiled in Reference::new"),
    })
}

/// "name", "name:port", "[v6]", "[v6]:port", or a bare IPv6 address (two
/// colons or more, no port); None for any other shape.
fn without_port(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let close = rest.find(']')? + 1;
        let after = &rest[close..];
        let clear = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| !port.contains([':', '[', ']']));
        return clear.then_some(&host[..=close]);
    }
    if host.contains(['[', ']']) {
        return None;
    }
    match host.matches(':').count() {
        1 => host.split(':').next(),
        _ => Some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::without_port;

    #[test]
    fn hosts_lose_their_port_only() {
        assert_eq!(without_port("example.com"), Some("example.com"));
        assert_eq!(without_port("example.com:8080"), Some("example.com"));
        assert_eq!(without_port("[2001:db8::1]:80"), Some("[2001:db8::1]"));
        assert_eq!(without_port("[2001:db8::1]"), Some("[2001:db8::1]"));
        assert_eq!(without_port("2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(without_port("[a]b:80"), None);
    }
}
