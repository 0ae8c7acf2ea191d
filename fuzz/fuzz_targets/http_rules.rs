//! HTTP rule sets through `config::from_str`, then the router: the input
//! is TOML for `[[service.http.rule]]` tables (after a fixed service with
//! pools "app", "static" and "api"), a NUL byte, and an HTTP request. A
//! rule set the config accepts must compile in the router exactly as
//! written and pick the pool its documented meaning gives.

#![no_main]

use halb::proxy::route::Routes;
use halb_fuzz::{request, rules::Reference};
use libfuzzer_sys::fuzz_target;

/// What the rules are appended to.
pub const SERVICE: &str = r#"
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
[[service.http.pool]]
name = "api"
[[service.http.pool.backend]]
address = "198.18.0.13"
"#;

/// Asked of every rule set, besides the input's own request.
const REQUESTS: [&[u8]; 3] = [
    b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
    b"GET /static/Logo.PNG?v=2 HTTP/1.1\r\nHost: static.example.com:8080\r\n\r\n",
    b"POST /api/v1/orders HTTP/1.1\r\nHost: [2001:db8::80]:80\r\nX-Pool: static\r\nContent-Type: application/json\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let (rules, request) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(rules) = std::str::from_utf8(rules) else {
        return;
    };
    let Ok(config) = halb::config::from_str(&format!("{SERVICE}{rules}")) else {
        return;
    };
    let Some(http) = config.services.first().and_then(|s| s.http.as_ref()) else {
        return;
    };
    let routes = Routes::new(http);
    let reference = Reference::new(http);
    for request in std::iter::once(request)
        .chain(REQUESTS)
        .filter_map(request::parse)
    {
        let picked = routes.pick(&request);
        assert!(picked < http.pools.len());
        if let Some(want) = reference.pick(&request) {
            assert_eq!(picked, want, "{request:?} with rules {rules}");
        }
    }
});
