//! The layer-7 service the HTTP proxy tests and `cargo xtask bench l7`
//! share: the haproxy how-to's url_static rules in front of the scenario's
//! backends (web1 the static pool, web2 and web3 the app pool by
//! leastconn), plus a pool whose only backend refuses connections.

use std::path::Path;

use crate::{scenario::VIP, topo::HOST_IF};

/// The url_static service; `extra` goes into `[service.http]`,
/// `timeouts` into `[service.http.timeouts]`.
pub fn url_static(pin_dir: &Path, extra: &str, timeouts: &str) -> String {
    format!(
        r#"[datapath]
interfaces = ["{HOST_IF}"]
pin_dir = "{}"

[[service]]
name = "www"
vip = "{VIP}"
port = 80
keep_client_address = true

[service.check]
type = "tcp"
interval = "200ms"
timeout = "200ms"
fall = 2
rise = 2

[service.http]
default_pool = "app"
{extra}

[service.http.timeouts]
{timeouts}

[[service.http.rule]]
pool = "static"
path_beg = ["/static", "/images"]

[[service.http.rule]]
pool = "static"
path_end = [".jpg", ".gif", ".png", ".css", ".js"]
ignore_case = true

[[service.http.rule]]
pool = "nowhere"
path_beg = ["/nowhere"]

[[service.http.pool]]
name = "static"

[[service.http.pool.backend]]
address = "198.18.0.11"

[[service.http.pool]]
name = "app"
balance = "leastconn"

[[service.http.pool.backend]]
address = "198.18.0.12"

[[service.http.pool.backend]]
address = "198.18.0.13"

[[service.http.pool]]
name = "nowhere"

[[service.http.pool.backend]]
address = "198.18.0.13"
port = 81
"#,
        pin_dir.display()
    )
}
