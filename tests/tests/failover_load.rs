//! The failover load client (`halb_tests::failover_load`) end to end,
//! without halb: against one halb-web that stays up, it counts nothing
//! broken and every downloaded byte; against one that is killed mid-way,
//! it counts every kept-alive connection, the download and new
//! connections as broken.
//!
//! ```text
//!   [client] eth0 ---- br0 [switch] ---- eth0 [web] (halb-web web1 on :80)
//!   198.18.0.10/24                       198.18.0.11/24
//! ```

use std::{net::SocketAddr, time::Duration};

use halb_tests::{
    failover_load::{FailoverLoad, LoadSpec, Progress, stream_len},
    netns::NetNs,
    process::ChildGuard,
    scenario::web_server,
    topo::{Host, Lan},
    wait,
};

const WEB: &str = "198.18.0.11:80";

/// The LAN (kept for its lifetime), the client, the web host and its
/// running halb-web.
fn topology() -> (Lan, Host, Host, ChildGuard) {
    let mut lan = Lan::new();
    let client = lan.attach(NetNs::new("client"), &["198.18.0.10/24"]);
    let web = lan.attach(NetNs::new("web"), &["198.18.0.11/24"]);
    let server = web_server(&web.ns, "web1", env!("CARGO_BIN_EXE_halb-web").as_ref());
    (lan, client, web, server)
}

fn target() -> SocketAddr {
    WEB.parse().expect("web address")
}

#[test]
fn against_a_steady_server_nothing_breaks_and_every_byte_arrives() {
    let (_lan, client, _web, _server) = topology();
    let spec = LoadSpec {
        kept_alive: 10,
        downloads: 1,
        download_ms: 1500,
        new_conn_workers: 2,
    };
    let load = FailoverLoad::start(&client.ns, target(), spec);
    wait::until("traffic of every kind", Duration::from_secs(20), || {
        let p = load.progress();
        let flowing = p.kept_alive_requests >= 5 * spec.kept_alive
            && p.new_ok >= 10
            && p.downloads_finished == spec.downloads;
        flowing.then_some(()).ok_or_else(|| format!("{p:?}"))
    });
    let report = load.stop();

    assert_eq!(report.broken(), 0, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.kept_alive, spec.kept_alive, "{report}");
    assert!(
        report.kept_alive_requests >= 5 * spec.kept_alive,
        "{report}"
    );
    assert!(report.new_ok >= 10, "{report}");
    assert_eq!(
        report.download_bytes,
        stream_len(spec.download_ms),
        "{report}"
    );
    // Requests go on about every 100 ms; a gap near the 10 s answer
    // timeout would mean a connection was left waiting.
    assert!(
        report.longest_gap > Duration::ZERO && report.longest_gap < Duration::from_secs(5),
        "{report}"
    );
}

#[test]
fn a_killed_server_breaks_every_kept_alive_connection_the_download_and_new_connections() {
    let (_lan, client, _web, server) = topology();
    let spec = LoadSpec {
        kept_alive: 10,
        downloads: 1,
        // Long enough to be under way when the server dies.
        download_ms: 10_000,
        new_conn_workers: 2,
    };
    let load = FailoverLoad::start(&client.ns, target(), spec);
    let before = wait::until("traffic flows", Duration::from_secs(20), || {
        let p = load.progress();
        let flowing = p.kept_alive_requests >= 2 * spec.kept_alive && p.new_ok >= 2;
        flowing.then_some(p).ok_or_else(|| format!("{p:?}"))
    });
    assert_eq!(
        before,
        Progress {
            kept_alive_broken: 0,
            new_failed: 0,
            downloads_finished: 0,
            ..before
        },
        "nothing may break before the server dies"
    );

    drop(server);
    wait::until("every kind broken", Duration::from_secs(20), || {
        let p = load.progress();
        let broken = p.kept_alive_broken == spec.kept_alive
            && p.new_failed >= 2
            && p.downloads_finished == spec.downloads;
        broken.then_some(()).ok_or_else(|| format!("{p:?}"))
    });
    let report = load.stop();

    assert_eq!(report.kept_alive_broken, spec.kept_alive, "{report}");
    assert_eq!(report.downloads_broken, spec.downloads, "{report}");
    assert!(
        report.download_bytes < stream_len(spec.download_ms),
        "{report}"
    );
    assert!(report.new_ok >= 2 && report.new_failed >= 2, "{report}");
    assert_eq!(
        report.broken(),
        spec.kept_alive + spec.downloads + report.new_failed,
        "{report}"
    );
    for kind in ["kept-alive #", "download #0: ", "new connection at "] {
        assert!(
            report.errors.iter().any(|e| e.starts_with(kind)),
            "no {kind:?} error in {report}"
        );
    }
}
