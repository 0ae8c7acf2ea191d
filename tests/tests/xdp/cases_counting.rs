//! What the program leaves alone and what it counts: a frame flooded to
//! this port for another host's MAC is not forwarded (a switch floods
//! while a MAC moves, as in a failover), and a packet that cannot leave
//! (no neighbour, no NAT port) counts neither as served nor as a new flow.

use super::{
    cases_forward::{NAT_ONE_BACKEND, PORTS},
    harness::{Arms, CLIENT_MAC, Fixture, LB_MAC, XDP_DROP, XDP_PASS, XDP_TX, with_fixture},
    pkt::{self, Tcp, ip},
};
use halb_common::interface::Interface;

/// Another host's MAC on the same LAN (a VRRP peer's, say).
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

/// Tells the program lan0's MAC, as the agent does when it attaches.
fn describe_lan0(fx: &mut Fixture) {
    let value = Interface {
        mac: LB_MAC,
        _pad: [0; 2],
    };
    fx.dp
        .maps
        .interfaces
        .insert(fx.lan0.ifindex, value, 0)
        .expect("describe lan0");
}

fn served(fx: &Fixture, service: &str) -> (u64, u64, u64) {
    let s = fx.sync.service(service).expect("applied");
    let c = fx.dp.maps.service_counters(s.id).expect("service counters");
    let b = fx
        .dp
        .maps
        .backend_counters(s.backends[0].id)
        .expect("backend counters");
    assert_eq!((b.packets, b.new_flows), (c.packets, c.new_flows));
    (c.packets, c.bytes, c.new_flows)
}

#[test]
fn a_frame_for_another_hosts_mac_is_passed_untouched_and_creates_no_flow() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        describe_lan0(fx);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        let flooded = pkt::tcp((CLIENT_MAC, OTHER_MAC), client, vip, Tcp::Syn);
        let out = fx.run(fx.lan0.ifindex, &flooded);
        assert_eq!(out.action, XDP_PASS, "another host's frame was handled");
        assert_eq!(out.data, flooded, "passed as it came");
        let v = fx.verdicts();
        assert_eq!((v.pass_other_host, v.fwd_tx), (1, 0), "{v:?}");
        assert_eq!(served(fx, "web4"), (0, 0, 0));
        assert!(
            fx.dp
                .maps
                .flows
                .get(
                    &super::flow_key(client, vip, halb_common::addr::PROTO_TCP),
                    0
                )
                .is_err(),
            "a flow was tracked for another host's frame"
        );

        // The same packet addressed to this interface is served.
        let ours = pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn);
        assert_eq!(fx.run(fx.lan0.ifindex, &ours).action, XDP_TX);
        assert_eq!(served(fx, "web4").2, 1);
    });
}

#[test]
fn a_group_address_is_still_this_hosts_to_handle() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        describe_lan0(fx);
        let broadcast = [0xff; 6];
        let frame = pkt::tcp(
            (CLIENT_MAC, broadcast),
            (ip("198.18.0.10"), 40000),
            (ip("198.18.0.100"), 80),
            Tcp::Syn,
        );
        fx.run(fx.lan0.ifindex, &frame);
        assert_eq!(fx.verdicts().pass_other_host, 0);
    });
}

#[test]
fn a_packet_dropped_for_want_of_a_neighbour_is_not_counted_as_served() {
    with_fixture(Arms::One, PORTS, |fx| {
        // On-link, but no host answers for it: no neighbour entry.
        fx.apply(&NAT_ONE_BACKEND.replace("198.18.0.11", "198.18.0.77"));
        let input = pkt::tcp(
            (CLIENT_MAC, LB_MAC),
            (ip("198.18.0.10"), 40000),
            (ip("198.18.0.100"), 80),
            Tcp::Syn,
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_DROP);
        let v = fx.verdicts();
        assert_eq!(v.drop_no_neighbour, 1, "{v:?}");
        assert_eq!(
            served(fx, "web4"),
            (0, 0, 0),
            "a dropped packet was counted"
        );
    });
}

#[test]
fn a_packet_dropped_for_want_of_a_nat_port_is_not_counted_as_a_new_flow() {
    // One NAT port: the second client finds it taken.
    with_fixture(Arms::One, (20000, 20000), |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let vip = (ip("198.18.0.100"), 80);
        let first = pkt::tcp(
            (CLIENT_MAC, LB_MAC),
            (ip("198.18.0.10"), 40000),
            vip,
            Tcp::Syn,
        );
        assert_eq!(fx.run(fx.lan0.ifindex, &first).action, XDP_TX);
        let second = pkt::tcp(
            (CLIENT_MAC, LB_MAC),
            (ip("198.18.0.10"), 40001),
            vip,
            Tcp::Syn,
        );
        assert_eq!(fx.run(fx.lan0.ifindex, &second).action, XDP_DROP);
        assert_eq!(fx.verdicts().drop_nat_ports, 1);
        let (packets, bytes, new_flows) = served(fx, "web4");
        assert_eq!((packets, new_flows), (1, 1), "only the first was served");
        assert_eq!(bytes, first.len() as u64);
    });
}
