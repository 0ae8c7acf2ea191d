//! The announcements `net::garp::frames` builds for any address and MAC,
//! read back with etherparse: gratuitous ARP request and reply for IPv4,
//! an unsolicited neighbour advertisement (RFC 4861 §7.2.6) for IPv6.
//!
//! The agent sends these frames and never parses received ones, so the
//! builder is what there is to check: every frame must parse and say
//! exactly "`addr` is at `mac`".

#![no_main]

use std::net::IpAddr;

use etherparse::{
    ArpHardwareId, ArpOperation, EtherType, IpNumber, LinkSlice, NetSlice, SlicedPacket,
    TransportSlice,
};
use halb::net::garp;
use libfuzzer_sys::fuzz_target;

const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OVERRIDE: u8 = 0x20;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;

fuzz_target!(|data: &[u8]| {
    let (addr, mac) = halb_fuzz::announce::from_bytes(data);
    let frames = garp::frames(addr, mac);
    match addr {
        IpAddr::V4(v4) => {
            assert_eq!(frames.len(), 2, "a request and a reply");
            let mut operations = Vec::new();
            for frame in &frames {
                let packet = SlicedPacket::from_ethernet(frame).expect("the frame parses");
                let eth = ethernet(&packet);
                assert_eq!((eth.destination(), eth.source()), (BROADCAST, mac));
                assert_eq!(eth.ether_type(), EtherType::ARP);
                let Some(NetSlice::Arp(arp)) = &packet.net else {
                    panic!("not ARP: {frame:02x?}");
                };
                let arp = arp.to_packet();
                assert_eq!(arp.hw_addr_type, ArpHardwareId::ETHERNET);
                let arp = arp.try_eth_ipv4().expect("Ethernet/IPv4 ARP");
                assert_eq!((arp.sender_mac, arp.sender_ipv4), (mac, v4.octets()));
                assert_eq!(arp.target_ipv4, v4.octets(), "gratuitous: target is sender");
                operations.push(arp.operation);
            }
            assert_eq!(operations, [ArpOperation::REQUEST, ArpOperation::REPLY]);
        }
        IpAddr::V6(v6) => {
            assert_eq!(frames.len(), 1, "one advertisement");
            let frame = &frames[0];
            let packet = SlicedPacket::from_ethernet(frame).expect("the frame parses");
            let eth = ethernet(&packet);
            assert_eq!((eth.destination(), eth.source()), (ALL_NODES_MAC, mac));
            let Some(NetSlice::Ipv6(ip)) = &packet.net else {
                panic!("not IPv6: {frame:02x?}");
            };
            let ip = ip.header();
            assert_eq!((ip.source(), ip.destination()), (v6.octets(), ALL_NODES));
            assert_eq!(ip.hop_limit(), 255, "RFC 4861 §7.1.2");
            assert_eq!(ip.next_header(), IpNumber::IPV6_ICMP);
            let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else {
                panic!("not ICMPv6: {frame:02x?}");
            };
            assert_eq!(
                (icmp.type_u8(), icmp.code_u8()),
                (NEIGHBOR_ADVERTISEMENT, 0)
            );
            assert!(
                icmp.is_checksum_valid(ip.source(), ip.destination()),
                "checksum"
            );
            assert_eq!(
                icmp.bytes5to8(),
                [OVERRIDE, 0, 0, 0],
                "only the Override flag"
            );
            let body = icmp.payload();
            assert_eq!(body.len(), 16 + 8, "target and one option");
            assert_eq!(&body[..16], &v6.octets(), "target address");
            assert_eq!(&body[16..18], &[TARGET_LINK_LAYER_ADDRESS, 1]);
            assert_eq!(&body[18..], &mac);
        }
    }
});

fn ethernet<'a>(packet: &'a SlicedPacket<'_>) -> &'a etherparse::Ethernet2Slice<'a> {
    match &packet.link {
        Some(LinkSlice::Ethernet2(eth)) => eth,
        other => panic!("not Ethernet II: {other:?}"),
    }
}
