//! Virtual addresses through rtnetlink (halb::net::addr), in a namespace:
//! added with a keepalived-style label, seen by `ip`, removed.

use halb::net::addr::Addresses;
use halb_tests::netns::NetNs;

#[test]
fn vips_are_added_with_their_label_and_removed() {
    let ns = NetNs::new("vip");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ns.ip(&["link", "set", "eth0p", "up"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let addrs = Addresses::connect().expect("netlink");
            let v4 = "198.18.0.100".parse().unwrap();
            let v6 = "2001:db8::100".parse().unwrap();
            addrs
                .add("eth0", v4, 32, Some("eth0:10"))
                .await
                .expect("add v4");
            addrs
                .add("eth0", v4, 32, Some("eth0:10"))
                .await
                .expect("adding twice is fine");
            addrs.add("eth0", v6, 128, None).await.expect("add v6");
            let shown = ns.ip(&["addr", "show", "dev", "eth0"]);
            assert!(
                shown.contains("inet 198.18.0.100/32") && shown.contains("eth0:10"),
                "{shown}"
            );
            assert!(shown.contains("inet6 2001:db8::100/128"), "{shown}");
            addrs.remove("eth0", v4, 32).await.expect("remove v4");
            addrs.remove("eth0", v6, 128).await.expect("remove v6");
            addrs
                .remove("eth0", v6, 128)
                .await
                .expect("removing what is gone is fine");
            let shown = ns.ip(&["addr", "show", "dev", "eth0"]);
            assert!(
                !shown.contains("198.18.0.100") && !shown.contains("2001:db8::100"),
                "{shown}"
            );
            assert!(addrs.add("nope0", v4, 32, None).await.is_err());
        });
    });
}

#[test]
fn announcements_teach_the_lan_where_the_vip_is() {
    use halb_tests::topo::{HOST_IF, Lan};

    let mut lan = Lan::new();
    let master = lan.attach(NetNs::new("master"), &["198.18.0.2/24", "2001:db8::2/64"]);
    let router = lan.attach(NetNs::new("router"), &["198.18.0.1/24", "2001:db8::1/64"]);
    // Learn neighbours from unsolicited announcements, as routers can.
    router
        .ns
        .exec("sysctl", &["-qw", "net.ipv4.conf.eth0.arp_accept=1"]);
    // Untracked NAs create entries only on a router (RFC 9131).
    router
        .ns
        .exec("sysctl", &["-qw", "net.ipv6.conf.eth0.forwarding=1"]);
    router.ns.exec(
        "sysctl",
        &["-qw", "net.ipv6.conf.eth0.accept_untracked_na=1"],
    );
    let mac = master.mac();
    master.ns.run(|| {
        halb::net::garp::announce(HOST_IF, "198.18.0.100".parse().unwrap()).expect("GARP");
        halb::net::garp::announce(HOST_IF, "2001:db8::100".parse().unwrap()).expect("NA");
    });
    // Nothing else tells the router about these addresses: an entry for
    // each, with the master's MAC, is the announcements' doing.
    halb_tests::wait::until(
        "the router learning both VIPs at the master's MAC",
        std::time::Duration::from_secs(10),
        || {
            let neighbours = router.ns.ip(&["neigh", "show", "dev", HOST_IF]);
            let learned = |vip: &str| {
                neighbours
                    .lines()
                    .any(|l| l.starts_with(vip) && l.contains(&format!("lladdr {mac} ")))
            };
            if learned("198.18.0.100 ") && learned("2001:db8::100 ") {
                Ok(())
            } else {
                Err(format!("neighbours {neighbours:?} (master is {mac})"))
            }
        },
    );
}
