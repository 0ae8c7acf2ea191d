//! The config file as written: serde types that mirror the TOML, with spans
//! kept where validation may need to point at a value. Unknown keys are errors.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub datapath: Datapath,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<Service>>,
    #[serde(default, rename = "vrrp")]
    pub vrrp: Vec<Spanned<Vrrp>>,
    pub sync: Option<Spanned<Sync>>,
    pub bgp: Option<Spanned<Bgp>>,
}

/// `[bgp]`: announce the VIPs through the local BIRD 2.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// The file halb writes, which bird.conf includes
    /// (default "/etc/bird/halb.conf").
    pub include: Option<Spanned<String>>,
    /// BIRD's control socket (default "/run/bird/bird.ctl").
    pub bird_socket: Option<Spanned<String>>,
    /// This node's AS number, for the sessions halb writes.
    pub local_as: Option<Spanned<i64>>,
    /// The routers; none when bird.conf has sessions of its own, which
    /// export with `filter halb_export`.
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<Spanned<Neighbor>>,
    /// BFD transmit and receive interval (default "100ms").
    pub bfd_interval: Option<Spanned<String>>,
    /// BFD packets missed before a session is down (default 3).
    pub bfd_multiplier: Option<Spanned<i64>>,
    /// How long a stopping node announces its VIPs with the
    /// GRACEFUL_SHUTDOWN community before it withdraws them (default "2s").
    pub shutdown_grace: Option<Spanned<String>>,
}

/// `[[bgp.neighbor]]`: one router halb's BIRD peers with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    pub address: Spanned<String>,
    #[serde(rename = "as")]
    pub remote_as: Spanned<i64>,
    /// Run BFD with it (default true).
    pub bfd: Option<bool>,
}

/// `[sync]`: connection-state sync with the other halb nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Address and UDP port this node receives sync messages on.
    pub listen: Spanned<String>,
    /// The other nodes' `listen` addresses.
    pub peers: Spanned<Vec<Spanned<String>>>,
    /// The shared secret, inline (at least 16 bytes)...
    pub key: Option<Spanned<String>>,
    /// ...or in a file of its own, readable by root only.
    pub key_file: Option<Spanned<String>>,
    /// How long a starting node waits for its peers' tables before it
    /// preempts anyway (default "5s").
    pub resync_timeout: Option<Spanned<String>>,
}

/// `[[vrrp]]`: one VRRP instance (keepalived's `vrrp_instance`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub vrid: Spanned<u32>,
    pub priority: Spanned<u32>,
    /// 2 or 3 (default).
    pub version: Option<Spanned<u32>>,
    pub advert_interval: Option<Spanned<String>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    pub virtual_addresses: Spanned<Vec<Spanned<String>>>,
    /// Interface label for the addresses, like keepalived's `label eth0:10`.
    pub label: Option<Spanned<String>>,
    /// VRRPv2 simple password (keepalived's `auth_type PASS`).
    pub auth_pass: Option<Spanned<String>>,
    /// VRRPv3 over IPv4: compute the checksum without the pseudo-header,
    /// as VRRPv2 did (keepalived's `vrrp_v3_checksum_as_v2`).
    pub checksum_as_v2: Option<Spanned<bool>>,
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    /// Gratuitous ARPs / unsolicited NAs sent on becoming master.
    pub garp_count: Option<Spanned<u32>>,
    /// Delay before the second burst.
    pub garp_repeat_after: Option<Spanned<String>>,
    /// Period of later bursts while master; none: no refresh.
    pub garp_refresh: Option<Spanned<String>>,
    #[serde(default)]
    pub track_interface: Vec<Spanned<Track>>,
    #[serde(default)]
    pub track_service: Vec<Spanned<Track>>,
    pub notify_master: Option<Spanned<String>>,
    pub notify_backup: Option<Spanned<String>>,
    pub notify_fault: Option<Spanned<String>>,
}

/// What a VRRP instance tracks, and how much its priority drops when that
/// fails (keepalived's track_interface / track_script `weight`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub name: Spanned<String>,
    pub weight: Spanned<i64>,
}

/// `[service.http]`: the service is served by halb's HTTP proxy, with
/// haproxy-like rules choosing a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub default_pool: Spanned<String>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Spanned<Pool>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<Rule>>,
    /// Clients in this range get no X-Forwarded-For ("127.0.0.0/8" by
    /// default, as haproxy's `option forwardfor except 127.0.0.0/8`).
    pub forwarded_for_except: Option<Spanned<String>>,
    /// Keep connections to backends open between requests (default), or
    /// close each after its response (haproxy's `option http-server-close`).
    pub backend_keep_alive: Option<Spanned<bool>>,
    /// Further attempts after a failed connection (default 3).
    pub retries: Option<Spanned<u32>>,
    /// Retry on another backend (default true: `option redispatch`).
    pub redispatch: Option<Spanned<bool>>,
    /// Requests forwarded at once; more wait in a queue (default 3000).
    pub maxconn: Option<Spanned<u32>>,
    /// Largest request head in bytes (default 16384); larger gets 431.
    pub max_header_size: Option<Spanned<u32>>,
    pub timeouts: Option<Spanned<Timeouts>>,
}

/// `[service.http.timeouts]`: haproxy's timeouts, with the how-to's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// A client's whole request head (default "10s"); then 408.
    pub http_request: Option<Spanned<String>>,
    /// A request waiting for a free slot under maxconn (default "1m"); then 503.
    pub queue: Option<Spanned<String>>,
    /// Connecting to a backend (default "10s").
    pub connect: Option<Spanned<String>>,
    /// A client sending its request body (default "1m").
    pub client: Option<Spanned<String>>,
    /// A backend's response head (default "1m"); then 504.
    pub server: Option<Spanned<String>>,
    /// An idle client connection between requests (default "10s").
    pub keep_alive: Option<Spanned<String>>,
}

/// `[[service.http.pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: Spanned<String>,
    /// `roundrobin` (default) or `leastconn`.
    pub balance: Option<Spanned<String>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Spanned<Backend>>,
}

/// `[[service.http.rule]]`: every condition given must hold (each list
/// matches if any of its items does); the first rule that matches picks
/// its pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub pool: Spanned<String>,
    pub path_beg: Option<Spanned<Vec<String>>>,
    pub path_end: Option<Spanned<Vec<String>>>,
    pub path_regex: Option<Spanned<String>>,
    pub host: Option<Spanned<Vec<String>>>,
    pub method: Option<Spanned<Vec<String>>>,
    pub header: Option<Spanned<HeaderMatch>>,
    /// Paths compare without case (haproxy's `-i`).
    pub ignore_case: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    /// Substring the header's value must contain; none: present.
    pub contains: Option<String>,
}

/// `[admin]`: how operators reach the agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Unix socket for `halb status`, drain, enable, reload and stop.
    pub control_socket: Option<Spanned<String>>,
    /// Address:port serving Prometheus metrics at /metrics; none: off.
    pub metrics: Option<Spanned<String>>,
}

/// `[datapath]`: where and how the XDP program runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapath {
    /// Interfaces the XDP program is attached to.
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    /// `native` (driver mode, the default) or `generic` (skb mode).
    pub xdp_mode: Option<Spanned<String>>,
    /// Folder in bpffs where maps are pinned.
    pub pin_dir: Option<Spanned<String>>,
    /// Most verbose level of the XDP program's own log lines.
    pub log_level: Option<Spanned<String>>,
    /// Slots of each service's Maglev table (a prime).
    pub maglev_table_size: Option<Spanned<u32>>,
    /// Source ports full NAT uses towards backends: [first, last].
    pub nat_ports: Option<Spanned<[u16; 2]>>,
    /// Seconds an idle TCP flow stays tracked.
    pub tcp_timeout: Option<Spanned<u64>>,
    /// Seconds a TCP flow stays tracked after a FIN or RST.
    pub tcp_closing_timeout: Option<Spanned<u64>>,
    /// Seconds an idle UDP flow stays tracked.
    pub udp_timeout: Option<Spanned<u64>>,
}

/// `[[service]]`: one virtual service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: Spanned<String>,
    pub vip: Spanned<String>,
    pub port: Spanned<u16>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<Spanned<String>>,
    /// `nat` (default) or `dsr`.
    pub mode: Option<Spanned<String>>,
    /// NAT mode: keep the client's address (destination-only NAT).
    pub keep_client_address: Option<Spanned<bool>>,
    /// Full NAT: the balancer's address backends see as the source.
    pub snat_address: Option<Spanned<String>>,
    /// `none` (default) or `source`: pick the backend by client address.
    pub affinity: Option<Spanned<String>>,
    /// How the backends' health is checked; none means always up.
    pub check: Option<Spanned<Check>>,
    /// When no backend is up: `drop` (default) or `reset` (TCP RST).
    pub when_all_down: Option<Spanned<String>>,
    /// HTTP rules and pools: a layer-7 service.
    pub http: Option<Spanned<Http>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Spanned<Backend>>,
}

/// `[service.check]`, and a backend's `check = { ... }` overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// `tcp` (connect) or `http` (GET, status and body).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Time between checks, e.g. "2s" or "500ms".
    pub interval: Option<Spanned<String>>,
    /// Time a check may take.
    pub timeout: Option<Spanned<String>>,
    /// Consecutive successes that bring a down backend up.
    pub rise: Option<Spanned<u32>>,
    /// Consecutive failures that take an up backend down.
    pub fall: Option<Spanned<u32>>,
    /// Port to check; the backend's by default.
    pub port: Option<Spanned<u16>>,
    /// HTTP: the path requested.
    pub path: Option<Spanned<String>>,
    /// HTTP: the status expected.
    pub expect_status: Option<Spanned<u16>>,
    /// HTTP: a text the body must contain.
    pub expect_body: Option<Spanned<String>>,
}

/// `[[service.backend]]`: one real server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: Spanned<String>,
    /// Defaults to the service's port.
    pub port: Option<Spanned<u16>>,
    /// Relative share of new flows (default 1; 0 takes none).
    pub weight: Option<Spanned<u32>>,
    /// DSR: the backend's MAC, when the kernel should not be asked for it.
    pub mac: Option<Spanned<String>>,
    /// Overrides of the service's check for this backend.
    pub check: Option<Spanned<Check>>,
}
