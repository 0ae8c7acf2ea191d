//! What is not a well-formed packet for a service: each case checks the
//! documented rule (README, "Packet rules") and its counter.
//!
//! Frames are built with etherparse, then the one field under test is
//! broken in place, since the library refuses to build malformed headers.

use etherparse::{ArpEthIpv4Packet, ArpOperation, IpHeaders, IpNumber, Ipv4Header, PacketBuilder};

use super::{
    cases_forward::{NAT_ONE_BACKEND, PORTS},
    harness::{Arms, CLIENT_MAC, Fixture, LB_MAC, XDP_DROP, XDP_PASS, assert_frame, with_fixture},
    pkt::{self, L3, PAYLOAD, Tcp, ip},
};
use halb_common::stats::VerdictCounters;

fn syn_to_vip() -> Vec<u8> {
    pkt::tcp(
        (CLIENT_MAC, LB_MAC),
        (ip("198.18.0.10"), 40000),
        (ip("198.18.0.100"), 80),
        Tcp::Syn,
    )
}

fn udp6_to_vip() -> Vec<u8> {
    pkt::udp(
        (CLIENT_MAC, LB_MAC),
        (ip("2001:db8::10"), 40000),
        (ip("2001:db8::100"), 80),
    )
}

/// Runs `input`, expects `action` with the frame unchanged, and one count
/// in the counter `field` picks.
fn expect(
    fx: &mut Fixture,
    case: &str,
    input: &[u8],
    action: u32,
    field: fn(&VerdictCounters) -> u64,
) {
    let before = field(&fx.verdicts());
    let out = fx.run(fx.lan0.ifindex, input);
    assert_eq!(out.action, action, "{case}");
    assert_frame(case, &out.data, input);
    assert_eq!(field(&fx.verdicts()), before + 1, "{case}: counter");
}

#[test]
fn malformed_ipv4_headers_are_dropped() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let drop_bad_ip = |v: &VerdictCounters| v.drop_bad_ip;

        let mut truncated = syn_to_vip();
        truncated.truncate(L3 + 12);
        expect(
            fx,
            "truncated IPv4 header",
            &truncated,
            XDP_DROP,
            drop_bad_ip,
        );

        let mut short_ihl = syn_to_vip();
        short_ihl[L3] = 0x44; // IHL 4: 16 bytes, less than a header
        expect(fx, "IHL below 5", &short_ihl, XDP_DROP, drop_bad_ip);

        let mut long_total = syn_to_vip();
        let len = (long_total.len() - L3 + 1) as u16;
        long_total[L3 + 2..L3 + 4].copy_from_slice(&len.to_be_bytes());
        expect(
            fx,
            "total length beyond the frame",
            &long_total,
            XDP_DROP,
            drop_bad_ip,
        );

        let mut version = syn_to_vip();
        version[L3] = 0x65; // version 6 in an IPv4 EtherType
        expect(fx, "wrong IP version", &version, XDP_DROP, drop_bad_ip);
    });
}

#[test]
fn malformed_ipv6_headers_are_dropped() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let mut long_payload = udp6_to_vip();
        let len = (long_payload.len() - L3 - 40 + 8) as u16;
        long_payload[L3 + 4..L3 + 6].copy_from_slice(&len.to_be_bytes());
        expect(
            fx,
            "IPv6 payload beyond the frame",
            &long_payload,
            XDP_DROP,
            |v| v.drop_bad_ip,
        );

        let mut truncated = udp6_to_vip();
        truncated.truncate(L3 + 30);
        expect(fx, "truncated IPv6 header", &truncated, XDP_DROP, |v| {
            v.drop_bad_ip
        });
    });
}

#[test]
fn malformed_transport_headers_are_dropped() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let drop_bad_l4 = |v: &VerdictCounters| v.drop_bad_l4;

        // Cut inside the TCP header, with the IP total length saying so.
        let mut cut = syn_to_vip();
        cut.truncate(L3 + 20 + 12);
        let total = 32u16;
        cut[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
        expect(fx, "truncated TCP header", &cut, XDP_DROP, drop_bad_l4);

        let mut doff = syn_to_vip();
        doff[L3 + 20 + 12] = 0x40; // data offset 4: shorter than a header
        expect(fx, "TCP data offset below 5", &doff, XDP_DROP, drop_bad_l4);

        let mut long_udp = udp6_to_vip();
        let len = (8 + PAYLOAD.len() + 1) as u16;
        long_udp[L3 + 40 + 4..L3 + 40 + 6].copy_from_slice(&len.to_be_bytes());
        expect(
            fx,
            "UDP length beyond the datagram",
            &long_udp,
            XDP_DROP,
            drop_bad_l4,
        );
    });
}

#[test]
fn fragments_to_a_vip_are_dropped_others_pass() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let fragment = |dst: [u8; 4]| {
            let mut header =
                Ipv4Header::new(0, 64, IpNumber::TCP, [198, 18, 0, 10], dst).expect("header");
            header.more_fragments = true;
            header.dont_fragment = false;
            let mut out = Vec::new();
            PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
                .ip(IpHeaders::Ipv4(header, Default::default()))
                .tcp(40000, 80, 1, 1000)
                .write(&mut out, PAYLOAD)
                .expect("build fragment");
            out
        };
        expect(
            fx,
            "IPv4 fragment to a VIP",
            &fragment([198, 18, 0, 100]),
            XDP_DROP,
            |v| v.drop_fragment,
        );
        expect(
            fx,
            "IPv4 fragment elsewhere",
            &fragment([198, 18, 0, 2]),
            XDP_PASS,
            |v| v.pass_fragment,
        );

        let mut frag6 = udp6_to_vip();
        frag6[L3 + 6] = 44; // next header: fragment
        expect(fx, "IPv6 fragment to a VIP", &frag6, XDP_DROP, |v| {
            v.drop_fragment
        });
    });
}

#[test]
fn what_is_not_ours_passes_untouched() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(NAT_ONE_BACKEND);
        let mut arp = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
            .arp(
                ArpEthIpv4Packet {
                    operation: ArpOperation::REQUEST,
                    sender_mac: CLIENT_MAC,
                    sender_ipv4: [198, 18, 0, 10],
                    target_mac: [0; 6],
                    target_ipv4: [198, 18, 0, 100],
                }
                .into(),
            )
            .write(&mut arp)
            .expect("build ARP");
        expect(fx, "ARP", &arp, XDP_PASS, |v| v.pass_not_ip);

        // VRRP (IP protocol 112) to its multicast group.
        let mut vrrp = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, [0x01, 0, 0x5e, 0, 0, 0x12])
            .ip(IpHeaders::Ipv4(
                Ipv4Header::new(0, 255, IpNumber(112), [198, 18, 0, 3], [224, 0, 0, 18])
                    .expect("header"),
                Default::default(),
            ))
            .write(
                &mut vrrp,
                IpNumber(112),
                &[0x31, 51, 100, 1, 0, 1, 0, 0, 198, 18, 0, 100],
            )
            .expect("build VRRP");
        expect(fx, "VRRP", &vrrp, XDP_PASS, |v| v.pass_not_service);

        let mut hop_by_hop = udp6_to_vip();
        hop_by_hop[L3 + 6] = 0; // next header: hop-by-hop options
        expect(fx, "IPv6 extension header", &hop_by_hop, XDP_PASS, |v| {
            v.pass_ipv6_ext
        });

        let mut ping = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv4([198, 18, 0, 10], [198, 18, 0, 100], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut ping, PAYLOAD)
            .expect("build echo");
        expect(fx, "ICMP echo to a VIP", &ping, XDP_PASS, |v| v.pass_icmp);
    });
}
