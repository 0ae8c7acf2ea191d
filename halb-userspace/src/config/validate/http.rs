//! `[service.http]`: pools and haproxy-like rules, parsed and checked for
//! the HTTP proxy (the layer-7 issue serves them).

use std::{collections::HashSet, net::IpAddr, time::Duration};

use toml::Spanned;

use super::{
    BackendConfig, Errors,
    check::parse_duration_at,
    model, parse_cidr,
    service::{BackendContext, backends},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Rules in order; the first that matches picks the pool.
    pub rules: Vec<HttpRule>,
    /// The pool when no rule matches.
    pub default_pool: String,
    pub pools: Vec<PoolConfig>,
    pub settings: HttpSettings,
}

/// How the proxy behaves, with haproxy's (and its how-to's) defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Clients in this network get no X-Forwarded-For; none: all get it.
    pub forwarded_for_except: Option<(IpAddr, u8)>,
    pub backend_keep_alive: bool,
    pub retries: u32,
    pub redispatch: bool,
    pub maxconn: u32,
    pub max_header_size: u32,
    pub timeouts: HttpTimeouts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub http_request: Duration,
    pub queue: Duration,
    pub connect: Duration,
    pub client: Duration,
    pub server: Duration,
    pub keep_alive: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            http_request: Duration::from_secs(10),
            queue: Duration::from_secs(60),
            connect: Duration::from_secs(10),
            client: Duration::from_secs(60),
            server: Duration::from_secs(60),
            keep_alive: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// All must hold.
    pub conditions: Vec<Condition>,
    pub pool: String,
    /// Path conditions compare without case.
    pub ignore_case: bool,
}

/// One condition of a rule; a list matches when any of its items does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    PathBegins(Vec<String>),
    PathEnds(Vec<String>),
    /// A regular expression the path must match (checked to compile).
    PathRegex(String),
    Host(Vec<String>),
    Method(Vec<String>),
    Header {
        name: String,
        contains: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub balance: Balance,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
}

pub(super) fn http(
    raw: &Spanned<model::Http>,
    context: &BackendContext<'_>,
    errors: &mut Errors<'_, '_>,
) -> HttpConfig {
    let raw_ref = raw.get_ref();
    let mut pools = Vec::new();
    let mut names = HashSet::new();
    for pool in &raw_ref.pools {
        let p = pool.get_ref();
        if !names.insert(p.name.get_ref().clone()) {
            errors.at(
                p.name.span(),
                format!("pool {:?} is defined twice: rename one", p.name.get_ref()),
            );
        }
        let balance = errors.choice(
            p.balance.as_ref(),
            "balance",
            &[
                ("roundrobin", Balance::RoundRobin),
                ("leastconn", Balance::LeastConn),
            ],
            Balance::RoundRobin,
        );
        if p.backends.is_empty() {
            errors.at(
                p.name.span(),
                format!(
                    "pool {:?} has no backend: add a [[service.http.pool.backend]]",
                    p.name.get_ref()
                ),
            );
        }
        let list = p
            .backends
            .iter()
            .map(|b| Spanned::new(b.span(), clone_backend(b.get_ref())))
            .collect();
        let backends = backends(list, context, errors);
        if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
            errors.at(
                p.name.span(),
                format!(
                    "every backend of pool {:?} has weight 0: give one a weight of 1 or more",
                    p.name.get_ref()
                ),
            );
        }
        pools.push(PoolConfig {
            name: p.name.get_ref().clone(),
            balance,
            backends,
        });
    }
    let known = |pool: &Spanned<String>, errors: &mut Errors<'_, '_>| {
        if !names.contains(pool.get_ref()) {
            errors.at(
                pool.span(),
                format!(
                    "no pool {:?} in this service: define it in [[service.http.pool]]",
                    pool.get_ref()
                ),
            );
        }
        pool.get_ref().clone()
    };
    let default_pool = known(&raw_ref.default_pool, errors);
    let mut rules = Vec::new();
    for rule in &raw_ref.rules {
        let r = rule.get_ref();
        let pool = known(&r.pool, errors);
        let mut conditions = Vec::new();
        if let Some(v) = &r.path_beg {
            conditions.push(Condition::PathBegins(v.get_ref().clone()));
        }
        if let Some(v) = &r.path_end {
            conditions.push(Condition::PathEnds(v.get_ref().clone()));
        }
        let ignore_case = r.ignore_case.as_ref().is_some_and(|i| *i.get_ref());
        if let Some(v) = &r.path_regex {
            if let Err(e) = path_regex(v.get_ref(), ignore_case) {
                errors.at(
                    v.span(),
                    format!("path_regex {:?} does not compile: {e}", v.get_ref()),
                );
            }
            conditions.push(Condition::PathRegex(v.get_ref().clone()));
        }
        if let Some(v) = &r.host {
            conditions.push(Condition::Host(v.get_ref().clone()));
        }
        if let Some(v) = &r.method {
            for m in v.get_ref() {
                if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
                    errors.at(
                        v.span(),
                        format!(
                            "method {m:?} is not an HTTP method: write it in capitals, e.g. \"GET\""
                        ),
                    );
                }
            }
            conditions.push(Condition::Method(v.get_ref().clone()));
        }
        if let Some(h) = &r.header {
            if ::http::HeaderName::from_bytes(h.get_ref().name.as_bytes()).is_err() {
                errors.at(
                    h.span(),
                    format!(
                        "header {:?} is not an HTTP header name: letters, digits and !#$%&'*+-.^_`|~ only",
                        h.get_ref().name
                    ),
                );
            }
            conditions.push(Condition::Header {
                name: h.get_ref().name.clone(),
                contains: h.get_ref().contains.clone(),
            });
        }
        for list in [&r.path_beg, &r.path_end, &r.host, &r.method]
            .into_iter()
            .flatten()
        {
            if list.get_ref().is_empty() {
                errors.at(
                    list.span(),
                    "an empty list matches nothing: give at least one item, or leave the key out",
                );
            }
        }
        if conditions.is_empty() {
            errors.at(
                rule.span(),
                "this rule has no condition, so it would take every request: give it one (path_beg, path_end, path_regex, host, method, header), or use default_pool",
            );
        }
        rules.push(HttpRule {
            conditions,
            pool,
            ignore_case,
        });
    }
    HttpConfig {
        rules,
        default_pool,
        pools,
        settings: settings(raw_ref, errors),
    }
}

fn settings(raw: &model::Http, errors: &mut Errors<'_, '_>) -> HttpSettings {
    let forwarded_for_except = match &raw.forwarded_for_except {
        None => Some((IpAddr::from([127, 0, 0, 0]), 8)),
        Some(s) if s.get_ref().is_empty() => None,
        Some(s) => {
            // A network needs its prefix: a bare address is refused.
            let parsed = s
                .get_ref()
                .contains('/')
                .then(|| parse_cidr(s.get_ref()))
                .flatten();
            if parsed.is_none() {
                errors.at(
                    s.span(),
                    format!(
                        "{:?} is not a network: write it like \"127.0.0.0/8\", or \"\" to add X-Forwarded-For for every client",
                        s.get_ref()
                    ),
                );
            }
            parsed
        }
    };
    let positive =
        |v: &Option<Spanned<u32>>, name: &str, default: u32, errors: &mut Errors<'_, '_>| match v {
            Some(n) if *n.get_ref() == 0 && name != "retries" => {
                errors.at(n.span(), format!("{name} must be at least 1"));
                default
            }
            Some(n) => *n.get_ref(),
            None => default,
        };
    let mut timeouts = HttpTimeouts::default();
    if let Some(t) = &raw.timeouts {
        let t = t.get_ref();
        for (value, name, slot) in [
            (&t.http_request, "http_request", &mut timeouts.http_request),
            (&t.queue, "queue", &mut timeouts.queue),
            (&t.connect, "connect", &mut timeouts.connect),
            (&t.client, "client", &mut timeouts.client),
            (&t.server, "server", &mut timeouts.server),
            (&t.keep_alive, "keep_alive", &mut timeouts.keep_alive),
        ] {
            if let Some(v) = value
                && let Some(d) = parse_duration_at(v, name, errors)
            {
                if d.is_zero() {
                    errors.at(v.span(), format!("timeout {name} must be longer than 0"));
                } else {
                    *slot = d;
                }
            }
        }
    }
    let max_header_size = positive(&raw.max_header_size, "max_header_size", 16 * 1024, errors);
    if let Some(v) = &raw.max_header_size
        && *v.get_ref() < 1024
    {
        errors.at(v.span(), "max_header_size is at least 1024 bytes");
    }
    HttpSettings {
        forwarded_for_except,
        backend_keep_alive: raw.backend_keep_alive.as_ref().is_none_or(|b| *b.get_ref()),
        retries: positive(&raw.retries, "retries", 3, errors),
        redispatch: raw.redispatch.as_ref().is_none_or(|b| *b.get_ref()),
        maxconn: positive(&raw.maxconn, "maxconn", 3000, errors),
        max_header_size: max_header_size.max(1024),
        timeouts,
    }
}

fn clone_backend(b: &model::Backend) -> model::Backend {
    model::Backend {
        address: b.address.clone(),
        port: b.port.clone(),
        weight: b.weight.clone(),
        mac: b.mac.clone(),
        check: None,
    }
}

/// A rule's `path_regex` as the proxy matches it: without case when the
/// rule ignores case. Validation compiles it the same way, so a pattern
/// that only `(?i)` makes too large is refused instead of dropped.
pub fn path_regex(pattern: &str, ignore_case: bool) -> Result<regex::Regex, regex::Error> {
    if ignore_case {
        regex::Regex::new(&format!("(?i){pattern}"))
    } else {
        regex::Regex::new(pattern)
    }
}
