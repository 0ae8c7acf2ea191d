//! `[service.http]`: pools and haproxy-like rules, parsed and checked for
//! the HTTP proxy (the layer-7 issue serves them).

use std::collections::HashSet;

use toml::Spanned;

use super::{
    BackendConfig, Errors, model,
    service::{BackendContext, backends},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Rules in order; the first that matches picks the pool.
    pub rules: Vec<HttpRule>,
    /// The pool when no rule matches.
    pub default_pool: String,
    pub pools: Vec<PoolConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// All must hold.
    pub conditions: Vec<Condition>,
    pub pool: String,
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
        if let Some(v) = &r.path_regex {
            if let Err(e) = regex_check(v.get_ref()) {
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
        rules.push(HttpRule { conditions, pool });
    }
    HttpConfig {
        rules,
        default_pool,
        pools,
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

/// Checks that `pattern` is a regular expression the proxy can compile.
fn regex_check(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
