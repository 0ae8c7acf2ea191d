//! Forwarding: NAT (full and keep-client), DSR, replies, pass-through.

use std::net::IpAddr;

use super::{
    flow_key,
    harness::{
        Arms, CLIENT_MAC, Fixture, LB_MAC, LB1_MAC, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
        assert_frame, backend_mac, with_fixture,
    },
    pkt::{self, Tcp, ip},
};
use halb_common::{
    addr::{PROTO_TCP, PROTO_UDP},
    flow::FLOW_CLOSING,
    maps::{DEFAULT_NAT_PORT_MAX, DEFAULT_NAT_PORT_MIN},
};

pub const PORTS: (u16, u16) = (DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX);

/// One backend, full NAT, IPv4 and IPv6 services.
pub const NAT_ONE_BACKEND: &str = r#"
[[service]]
name = "web4"
vip = "198.18.0.100"
port = 80
snat_address = "198.18.0.2"
[[service.backend]]
address = "198.18.0.11"
port = 8080

[[service]]
name = "web6"
vip = "2001:db8::100"
port = 80
protocol = "udp"
snat_address = "2001:db8::2"
[[service.backend]]
address = "2001:db8::11"
port = 8080
"#;

#[test]
fn nat_ipv4_tcp_new_flow_goes_to_the_backend_from_the_balancer() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        let input = pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn);
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_TX, "same interface towards the backend");

        let flow = fx.flow(client, vip, PROTO_TCP);
        let nat_port = u16::from_be(flow.nat_port_be);
        assert!((PORTS.0..=PORTS.1).contains(&nat_port), "port {nat_port}");
        let want = pkt::tcp(
            (LB_MAC, backend_mac(1)),
            (ip("198.18.0.2"), nat_port),
            (ip("198.18.0.11"), 8080),
            Tcp::Syn,
        );
        assert_frame("nat4 forward", &out.data, &want);

        // The backend's answer comes back to the balancer's port...
        let reply = pkt::tcp(
            (backend_mac(1), LB_MAC),
            (ip("198.18.0.11"), 8080),
            (ip("198.18.0.2"), nat_port),
            Tcp::Ack,
        );
        let out = fx.run(fx.lan0.ifindex, &reply);
        assert_eq!(out.action, XDP_TX);
        // ...and leaves as the VIP's answer to the client.
        let want = pkt::tcp((LB_MAC, CLIENT_MAC), vip, client, Tcp::Ack);
        assert_frame("nat4 reply", &out.data, &want);

        let v = fx.verdicts();
        assert_eq!((v.fwd_tx, v.reply_tx), (1, 1), "{v:?}");
        let service = fx.sync.service("web4").expect("applied");
        let counters = fx.dp.maps.service_counters(service.id).expect("counters");
        assert_eq!((counters.packets, counters.new_flows), (1, 1));
        assert_eq!(counters.bytes, input.len() as u64);
        let backend = fx
            .dp
            .maps
            .backend_counters(service.backends[0].id)
            .expect("counters");
        assert_eq!((backend.packets, backend.new_flows), (1, 1));
    });
}

#[test]
fn nat_ipv6_udp_new_flow_and_reply() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let client = (ip("2001:db8::10"), 5353);
        let vip = (ip("2001:db8::100"), 80);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::udp((CLIENT_MAC, LB_MAC), client, vip),
        );
        assert_eq!(out.action, XDP_TX);
        let flow = fx.flow(client, vip, PROTO_UDP);
        let nat_port = u16::from_be(flow.nat_port_be);
        let want = pkt::udp(
            (LB_MAC, backend_mac(1)),
            (ip("2001:db8::2"), nat_port),
            (ip("2001:db8::11"), 8080),
        );
        assert_frame("nat6 forward", &out.data, &want);
        let reply = pkt::udp(
            (backend_mac(1), LB_MAC),
            (ip("2001:db8::11"), 8080),
            (ip("2001:db8::2"), nat_port),
        );
        let out = fx.run(fx.lan0.ifindex, &reply);
        assert_eq!(out.action, XDP_TX);
        assert_frame(
            "nat6 reply",
            &out.data,
            &pkt::udp((LB_MAC, CLIENT_MAC), vip, client),
        );
    });
}

#[test]
fn packets_for_no_service_pass_untouched() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let cases = [
            // The VIP, another port.
            pkt::tcp(
                (CLIENT_MAC, LB_MAC),
                (ip("198.18.0.10"), 40000),
                (ip("198.18.0.100"), 22),
                Tcp::Syn,
            ),
            // The balancer's own address.
            pkt::tcp(
                (CLIENT_MAC, LB_MAC),
                (ip("198.18.0.10"), 40000),
                (ip("198.18.0.2"), 80),
                Tcp::Syn,
            ),
            // The VIP's port, UDP instead of TCP.
            pkt::udp(
                (CLIENT_MAC, LB_MAC),
                (ip("198.18.0.10"), 40000),
                (ip("198.18.0.100"), 80),
            ),
        ];
        for input in &cases {
            let out = fx.run(fx.lan0.ifindex, input);
            assert_eq!(out.action, XDP_PASS);
            assert_frame("not a service", &out.data, input);
        }
        assert_eq!(fx.verdicts().pass_not_service, 3);
    });
}

pub const DSR: &str = r#"
[[service]]
name = "dsr4"
vip = "198.18.0.100"
port = 80
mode = "dsr"
[[service.backend]]
address = "198.18.0.12"

[[service]]
name = "dsr6"
vip = "2001:db8::100"
port = 443
mode = "dsr"
[[service.backend]]
address = "2001:db8::12"
mac = "02:00:00:00:aa:bb"
"#;

#[test]
fn dsr_rewrites_only_the_destination_mac() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(DSR);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        assert_eq!(out.action, XDP_TX);
        // The neighbour table's MAC for the backend; the VIP stays.
        assert_frame(
            "dsr4",
            &out.data,
            &pkt::tcp((LB_MAC, backend_mac(2)), client, vip, Tcp::Syn),
        );

        // A configured MAC wins over the neighbour table.
        let client6 = (ip("2001:db8::10"), 40000);
        let vip6 = (ip("2001:db8::100"), 443);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client6, vip6, Tcp::Syn),
        );
        assert_eq!(out.action, XDP_TX);
        assert_frame(
            "dsr6 with mac",
            &out.data,
            &pkt::tcp(
                (LB_MAC, [0x02, 0, 0, 0, 0xaa, 0xbb]),
                client6,
                vip6,
                Tcp::Syn,
            ),
        );
        assert_eq!(fx.verdicts().fwd_tx, 2);
    });
}

#[test]
fn keep_client_address_two_arms_redirects_and_translates_the_reply() {
    with_fixture(Arms::Two, PORTS, |fx| {
        fx.apply(
            r#"
[[service]]
name = "web"
vip = "198.18.0.100"
port = 80
keep_client_address = true
[[service.backend]]
address = "198.18.1.13"
"#,
        );
        let client = (ip("198.18.0.10"), 40001);
        let vip = (ip("198.18.0.100"), 80);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        assert_eq!(
            out.action, XDP_REDIRECT,
            "out of the backend-side interface"
        );
        let backend = (ip("198.18.1.13"), 80);
        assert_frame(
            "keep-client forward",
            &out.data,
            &pkt::tcp((LB1_MAC, backend_mac(3)), client, backend, Tcp::Syn),
        );
        let lan1 = fx.lan1();
        let reply = pkt::tcp((backend_mac(3), LB1_MAC), backend, client, Tcp::Ack);
        let out = fx.run(lan1, &reply);
        assert_eq!(
            out.action, XDP_REDIRECT,
            "back out of the client-side interface"
        );
        assert_frame(
            "keep-client reply",
            &out.data,
            &pkt::tcp((LB_MAC, CLIENT_MAC), vip, client, Tcp::Ack),
        );
        let v = fx.verdicts();
        assert_eq!((v.fwd_redirect, v.reply_redirect), (1, 1), "{v:?}");
    });
}

#[test]
fn layer7_services_go_to_the_kernel() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        // Flip the service's layer-7 flag as the HTTP path will.
        let mut svc = *fx.sync.service("web4").map(|s| &s.value).expect("applied");
        svc.flags |= halb_common::service::SERVICE_F_LAYER7;
        let key = fx.sync.service("web4").expect("applied").key;
        fx.dp.maps.services.insert(key, svc, 0).expect("update");
        let input = pkt::tcp(
            (CLIENT_MAC, LB_MAC),
            (ip("198.18.0.10"), 1),
            (ip("198.18.0.100"), 80),
            Tcp::Syn,
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_PASS);
        assert_frame("layer7", &out.data, &input);
        assert_eq!(fx.verdicts().pass_layer7, 1);
    });
}

#[test]
fn fin_or_rst_marks_the_flow_closing() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(DSR);
        let vip = (ip("198.18.0.100"), 80);
        for (sport, end) in [(40000, Tcp::Fin), (40001, Tcp::Rst)] {
            let client = (ip("198.18.0.10"), sport);
            fx.run(
                fx.lan0.ifindex,
                &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
            );
            let key = flow_key(client, vip, PROTO_TCP);
            assert_ne!(
                fx.dp.maps.flows.get(&key, 0).expect("tracked").state,
                FLOW_CLOSING
            );
            let out = fx.run(
                fx.lan0.ifindex,
                &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, end),
            );
            assert_eq!(out.action, XDP_TX, "the closing segment is still forwarded");
            assert_eq!(
                fx.dp.maps.flows.get(&key, 0).expect("tracked").state,
                FLOW_CLOSING
            );
        }
    });
}

#[test]
fn nat_reply_without_a_neighbour_entry_goes_back_the_way_the_client_came() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        // The kernel never sees the client's packets, so it may not know its MAC.
        fx.ip(&["neigh", "del", "198.18.0.10", "dev", "lan0"]);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        let flow = fx.flow(client, vip, PROTO_TCP);
        let reply = pkt::tcp(
            (backend_mac(1), LB_MAC),
            (ip("198.18.0.11"), 8080),
            (ip("198.18.0.2"), u16::from_be(flow.nat_port_be)),
            Tcp::Ack,
        );
        let out = fx.run(fx.lan0.ifindex, &reply);
        assert_eq!(out.action, XDP_TX);
        assert_frame(
            "reply to the previous hop",
            &out.data,
            &pkt::tcp((LB_MAC, CLIENT_MAC), vip, client, Tcp::Ack),
        );
    });
}

#[test]
fn a_backend_reset_closes_the_clients_flow_too() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        let key = flow_key(client, vip, PROTO_TCP);
        fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        let flow = fx.dp.maps.flows.get(&key, 0).expect("tracked");
        // The backend refuses: its RST comes back through the NAT entry...
        let rst = pkt::tcp(
            (backend_mac(1), LB_MAC),
            (ip("198.18.0.11"), 8080),
            (ip("198.18.0.2"), u16::from_be(flow.nat_port_be)),
            Tcp::Rst,
        );
        assert_eq!(fx.run(fx.lan0.ifindex, &rst).action, XDP_TX);
        // ...and shortens the client's flow too, so both entries end together.
        assert_eq!(
            fx.dp.maps.flows.get(&key, 0).expect("tracked").state,
            FLOW_CLOSING
        );
    });
}

#[test]
fn a_syn_sent_again_moves_the_replies_to_the_hop_it_came_from() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        // The first SYN came through the old master, whose kernel forwards
        // for the VIP it no longer has: the client's ARP cache was late.
        let old_master = [0x02, 0, 0, 0, 0, 0x99];
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        let reply_to = |fx: &mut Fixture| {
            let flow = fx.flow(client, vip, PROTO_TCP);
            let reply = pkt::tcp(
                (backend_mac(1), LB_MAC),
                (ip("198.18.0.11"), 8080),
                (ip("198.18.0.2"), u16::from_be(flow.nat_port_be)),
                Tcp::Ack,
            );
            let out = fx.run(fx.lan0.ifindex, &reply);
            assert_eq!(out.action, XDP_TX);
            <[u8; 6]>::try_from(&out.data[..6]).unwrap()
        };
        let syn = |mac| pkt::tcp((mac, LB_MAC), client, vip, Tcp::Syn);
        assert_eq!(fx.run(fx.lan0.ifindex, &syn(old_master)).action, XDP_TX);
        assert_eq!(reply_to(fx), old_master);
        // The client sends its SYN again, now straight here: the replies follow.
        assert_eq!(fx.run(fx.lan0.ifindex, &syn(CLIENT_MAC)).action, XDP_TX);
        assert_eq!(reply_to(fx), CLIENT_MAC);
    });
}

#[test]
fn with_sync_a_reply_to_the_nat_address_that_no_entry_knows_is_dropped() {
    // The fixture runs the program as sync does (flow events on).
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let backend = (ip("198.18.0.11"), 8080);
        let segment =
            |to: (IpAddr, u16), flags| pkt::tcp((backend_mac(1), LB_MAC), backend, to, flags);
        let snat = ip("198.18.0.2");
        // A backend's answer to a flow whose state is still on its way: the
        // kernel would reset it (the address is local), so it is dropped.
        for flags in [Tcp::Ack, Tcp::Fin, Tcp::Rst] {
            let out = fx.run(fx.lan0.ifindex, &segment((snat, PORTS.0 + 5), flags));
            assert_eq!(out.action, XDP_DROP);
        }
        assert_eq!(fx.verdicts().drop_unknown_reply, 3);
        // A connection attempt to that address, a port outside the NAT
        // range, or an address that is no service's source: the kernel's.
        for (to, flags) in [
            ((snat, PORTS.0 + 5), Tcp::Syn),
            ((snat, PORTS.0 - 1), Tcp::Ack),
            ((ip("198.18.0.3"), PORTS.0 + 5), Tcp::Ack),
        ] {
            let out = fx.run(fx.lan0.ifindex, &segment(to, flags));
            assert_eq!(out.action, XDP_PASS, "{to:?}");
        }
        assert_eq!(fx.verdicts().drop_unknown_reply, 3);
    });
}
