//! The rules of a layer-7 service, compiled: the first rule whose
//! conditions all hold picks its pool (a list condition holds when any item
//! does), else the default pool; like haproxy's `use_backend ... if ACL`.

use http::{HeaderName, Method, Request};
use regex::Regex;

use crate::config::validate::{Condition, HttpConfig, path_regex};

enum Matcher {
    PathBegins(Vec<String>),
    PathEnds(Vec<String>),
    PathRegex(Regex),
    /// Compared without case and without a port.
    Host(Vec<String>),
    Method(Vec<Method>),
    Header {
        name: HeaderName,
        contains: Option<String>,
    },
    /// A condition that could not be built (validation refuses every case
    /// known): the rule fails closed, never sending every request to its
    /// pool.
    Never,
}

struct Rule {
    matchers: Vec<Matcher>,
    ignore_case: bool,
}

pub struct Routes {
    rules: Vec<(Rule, usize)>,
    default: usize,
}

impl Routes {
    /// Compiles `config`'s rules; pools are named by their index in
    /// `config.pools`. Validation already checked names and regexes.
    pub fn new(config: &HttpConfig) -> Self {
        let index = |name: &str| {
            config
                .pools
                .iter()
                .position(|p| p.name == name)
                .unwrap_or(0)
        };
        let rules = config
            .rules
            .iter()
            .map(|rule| {
                let fold = |v: &[String]| -> Vec<String> {
                    v.iter()
                        .map(|p| {
                            if rule.ignore_case {
                                p.to_ascii_lowercase()
                            } else {
                                p.clone()
                            }
                        })
                        .collect()
                };
                let matchers = rule
                    .conditions
                    .iter()
                    .map(|c| {
                        built(
                            match c {
                                Condition::PathBegins(v) => Some(Matcher::PathBegins(fold(v))),
                                Condition::PathEnds(v) => Some(Matcher::PathEnds(fold(v))),
                                Condition::PathRegex(r) => {
                                    path_regex(r, rule.ignore_case).ok().map(Matcher::PathRegex)
                                }
                                Condition::Host(v) => Some(Matcher::Host(
                                    v.iter().map(|h| h.to_ascii_lowercase()).collect(),
                                )),
                                Condition::Method(v) => Some(Matcher::Method(
                                    v.iter()
                                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                                        .collect(),
                                )),
                                Condition::Header { name, contains } => {
                                    HeaderName::from_bytes(name.as_bytes()).ok().map(|name| {
                                        Matcher::Header {
                                            name,
                                            contains: contains.clone(),
                                        }
                                    })
                                }
                            },
                            &rule.pool,
                        )
                    })
                    .collect();
                (
                    Rule {
                        matchers,
                        ignore_case: rule.ignore_case,
                    },
                    index(&rule.pool),
                )
            })
            .collect();
        Self {
            rules,
            default: index(&config.default_pool),
        }
    }

    /// The pool (index) for `request`.
    pub fn pick<B>(&self, request: &Request<B>) -> usize {
        let path = request.uri().path();
        // Lowered once, for the first rule that ignores case.
        let mut lowered: Option<String> = None;
        self.rules
            .iter()
            .find(|(rule, _)| {
                let path = if rule.ignore_case {
                    lowered.get_or_insert_with(|| path.to_ascii_lowercase())
                } else {
                    path
                };
                rule.matchers.iter().all(|m| m.holds(request, path))
            })
            .map_or(self.default, |(_, pool)| *pool)
    }
}

/// `matcher`, or [`Matcher::Never`] (logged) when it could not be built.
fn built(matcher: Option<Matcher>, pool: &str) -> Matcher {
    matcher.unwrap_or_else(|| {
        tracing::error!(
            pool,
            "an HTTP rule condition cannot be built: the rule never matches"
        );
        Matcher::Never
    })
}

impl Matcher {
    fn holds<B>(&self, request: &Request<B>, path: &str) -> bool {
        match self {
            Matcher::Never => false,
            Matcher::PathBegins(v) => v.iter().any(|p| path.starts_with(p.as_str())),
            Matcher::PathEnds(v) => v.iter().any(|p| path.ends_with(p.as_str())),
            Matcher::PathRegex(r) => r.is_match(path),
            Matcher::Host(v) => {
                let host = request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| request.uri().host())
                    .unwrap_or("");
                let host = strip_port(host).to_ascii_lowercase();
                v.contains(&host)
            }
            Matcher::Method(v) => v.contains(request.method()),
            Matcher::Header { name, contains } => {
                request
                    .headers()
                    .get_all(name)
                    .iter()
                    .any(|value| match contains {
                        None => true,
                        Some(text) => value
                            .to_str()
                            .is_ok_and(|value| value.contains(text.as_str())),
                    })
            }
        }
    }
}

/// "example.com:8080" -> "example.com"; "[2001:db8::1]:80" -> "[2001:db8::1]".
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && !host[..i].contains(':') || host[..i].ends_with(']') =>
        {
            &host[..i]
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let config = crate::config::from_str(
            r#"
[datapath]
interfaces = ["eth0"]
[[service]]
name = "www"
vip = "198.18.0.100"
port = 80
keep_client_address = true
[service.http]
default_pool = "app"
[[service.http.pool]]
name = "app"
[[service.http.pool.backend]]
address = "198.18.0.11"
[[service.http.pool]]
name = "static"
[[service.http.pool.backend]]
address = "198.18.0.12"
[[service.http.rule]]
pool = "static"
path_beg = ["/static", "/images", "/img", "/css"]
[[service.http.rule]]
pool = "static"
path_end = [".gif", ".png", ".jpg", ".css", ".js"]
ignore_case = true
[[service.http.rule]]
pool = "static"
host = ["static.example.com"]
method = ["GET", "HEAD"]
[[service.http.rule]]
pool = "static"
path_regex = "^/v[0-9]+/assets/"
[[service.http.rule]]
pool = "static"
header = { name = "X-Pool", contains = "static" }
"#,
        )
        .expect("valid");
        Routes::new(config.services[0].http.as_ref().unwrap())
    }

    fn request(method: &str, uri: &str, host: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
    }

    #[test]
    fn url_static_sends_static_paths_and_extensions_to_the_static_pool() {
        let r = routes();
        assert_eq!(r.pick(&request("GET", "/static/a.txt", "x")), 1);
        assert_eq!(r.pick(&request("GET", "/app/logo.png?v=2", "x")), 1);
        assert_eq!(r.pick(&request("GET", "/app/page", "x")), 0);
        // path_end has ignore_case; path_beg has not.
        assert_eq!(r.pick(&request("GET", "/app/LOGO.PNG", "x")), 1);
        assert_eq!(r.pick(&request("GET", "/STATIC/a.txt", "x")), 0);
        assert_eq!(r.pick(&request("GET", "/", "Static.Example.com:80")), 1);
        assert_eq!(r.pick(&request("POST", "/", "static.example.com")), 0);
        assert_eq!(r.pick(&request("GET", "/v2/assets/x", "x")), 1);
        assert_eq!(r.pick(&request("GET", "/v2/other", "x")), 0);
        let mut with_header = request("POST", "/api", "x");
        with_header
            .headers_mut()
            .insert("x-pool", "the-static-one".parse().unwrap());
        assert_eq!(r.pick(&with_header), 1);
        assert_eq!(strip_port("[2001:db8::1]:80"), "[2001:db8::1]");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn a_condition_that_cannot_be_built_fails_closed() {
        use crate::config::validate::{Condition, HttpRule};
        // Validation refuses this name; a config that got past it anyway
        // must not send everything to the rule's pool.
        let config = crate::config::from_str(
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\n\
             vip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n\
             [service.http]\ndefault_pool = \"app\"\n\
             [[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n\
             [[service.http.pool]]\nname = \"static\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.12\"\n",
        )
        .expect("valid");
        let mut http = config.services[0].http.clone().unwrap();
        http.rules.push(HttpRule {
            conditions: vec![Condition::Header {
                name: "X Pool".into(),
                contains: None,
            }],
            pool: "static".into(),
            ignore_case: false,
        });
        let r = Routes::new(&http);
        assert_eq!(r.pick(&request("GET", "/", "x")), 0, "the rule failed open");
    }
}
