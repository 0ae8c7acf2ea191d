//! ICMP "fragmentation needed" / "packet too big" about a tracked flow go
//! to that flow's backend (rewritten to the tuple it knows in NAT mode);
//! about anything else, to the kernel.

use std::net::IpAddr;

use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4::DestUnreachableHeader};
use halb_common::addr::{PROTO_TCP, PROTO_UDP};

use super::{
    cases_forward::{DSR, NAT_ONE_BACKEND, PORTS},
    harness::{
        Arms, CLIENT_MAC, LB_MAC, XDP_PASS, XDP_TX, assert_frame, backend_mac, with_fixture,
    },
    pkt::{self, PAYLOAD, Tcp, ip},
};

/// A router on the client's path.
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The first bytes of a packet from `src` to `dst`, as an ICMP error quotes it.
fn quoted(src: (IpAddr, u16), dst: (IpAddr, u16), udp: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let (header_len, result) = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let b = PacketBuilder::ipv4(s.octets(), d.octets(), 64);
            (
                20,
                if udp {
                    b.udp(src.1, dst.1).write(&mut out, PAYLOAD)
                } else {
                    b.tcp(src.1, dst.1, 7, 1000).write(&mut out, PAYLOAD)
                },
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let b = PacketBuilder::ipv6(s.octets(), d.octets(), 64);
            (
                40,
                if udp {
                    b.udp(src.1, dst.1).write(&mut out, PAYLOAD)
                } else {
                    b.tcp(src.1, dst.1, 7, 1000).write(&mut out, PAYLOAD)
                },
            )
        }
        _ => panic!("mixed families"),
    };
    result.expect("build quoted packet");
    out.truncate(header_len + 8);
    out
}

fn frag_needed(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], quote: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut out, quote)
        .expect("build ICMP");
    out
}

fn too_big(macs: ([u8; 6], [u8; 6]), src: IpAddr, dst: IpAddr, quote: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("IPv6 only")
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(s.octets(), d.octets(), 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut out, quote)
        .expect("build ICMPv6");
    out
}

#[test]
fn frag_needed_about_a_nat_flow_reaches_its_backend_rewritten() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        let flow = fx.flow(client, vip, PROTO_TCP);
        let nat_port = u16::from_be(flow.nat_port_be);

        // The router could not pass the VIP's reply to the client.
        let input = frag_needed(
            (ROUTER_MAC, LB_MAC),
            [198, 18, 0, 1],
            [198, 18, 0, 100],
            &quoted(vip, client, false),
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_TX);
        // The backend gets it about the packet it sent: backend -> balancer:nat_port.
        let want = frag_needed(
            (LB_MAC, backend_mac(1)),
            [198, 18, 0, 1],
            [198, 18, 0, 11],
            &quoted(
                (ip("198.18.0.11"), 8080),
                (ip("198.18.0.2"), nat_port),
                false,
            ),
        );
        assert_frame("frag needed, NAT", &out.data, &want);
        assert_eq!(fx.verdicts().icmp_to_backend, 1);
    });
}

#[test]
fn packet_too_big_about_a_nat6_flow_reaches_its_backend_rewritten() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let client = (ip("2001:db8::10"), 5353);
        let vip = (ip("2001:db8::100"), 80);
        fx.run(
            fx.lan0.ifindex,
            &pkt::udp((CLIENT_MAC, LB_MAC), client, vip),
        );
        let flow = fx.flow(client, vip, PROTO_UDP);
        let nat_port = u16::from_be(flow.nat_port_be);
        let router = ip("2001:db8::1");
        let input = too_big(
            (ROUTER_MAC, LB_MAC),
            router,
            vip.0,
            &quoted(vip, client, true),
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_TX);
        let want = too_big(
            (LB_MAC, backend_mac(1)),
            router,
            ip("2001:db8::11"),
            &quoted(
                (ip("2001:db8::11"), 8080),
                (ip("2001:db8::2"), nat_port),
                true,
            ),
        );
        assert_frame("packet too big, NAT6", &out.data, &want);
    });
}

#[test]
fn frag_needed_about_a_dsr_flow_goes_to_its_backend_unchanged() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(DSR);
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip("198.18.0.100"), 80);
        fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        let quote = quoted(vip, client, false);
        let input = frag_needed(
            (ROUTER_MAC, LB_MAC),
            [198, 18, 0, 1],
            [198, 18, 0, 100],
            &quote,
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_TX);
        let want = frag_needed(
            (LB_MAC, backend_mac(2)),
            [198, 18, 0, 1],
            [198, 18, 0, 100],
            &quote,
        );
        assert_frame("frag needed, DSR", &out.data, &want);
    });
}

#[test]
fn frag_needed_about_an_unknown_flow_goes_to_the_kernel() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let quote = quoted((ip("198.18.0.100"), 80), (ip("198.18.0.10"), 41234), false);
        let input = frag_needed(
            (ROUTER_MAC, LB_MAC),
            [198, 18, 0, 1],
            [198, 18, 0, 100],
            &quote,
        );
        let out = fx.run(fx.lan0.ifindex, &input);
        assert_eq!(out.action, XDP_PASS);
        assert_frame("untracked", &out.data, &input);
        assert_eq!(fx.verdicts().pass_icmp, 1);
    });
}
