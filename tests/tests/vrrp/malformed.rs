//! Malformed adverts, sent from another host on the LAN with a raw socket:
//! each is counted under its reason and ignored. Every one carries
//! priority 200, so had it been heeded the master (priority 100) would
//! have stepped down; the control cases show that a well-formed one does.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use halb::vrrp::packet::{Advert, ChecksumMode, Version, encode};
use halb_tests::{
    agent::Agent,
    ha::{HaPair, VIP},
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{instance, wait_state};

const SENDER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const PASSWORD: &[u8; 8] = b"halbpass";
/// The v2 instance's own address, apart from the v3 one's.
const VIP_V2: &str = "198.18.0.101";

/// A node running a VRRPv3 instance (VI_3, vrid 51) and a VRRPv2 one with a
/// password (VI_2, vrid 52), both master at priority 100.
fn node() -> (HaPair, Agent) {
    let pair = HaPair::build(None);
    let config = format!(
        "{}\n[[vrrp]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvrid = 52\npriority = 100\n\
         version = 2\nadvert_interval = \"1s\"\nauth_pass = \"halbpass\"\n\
         virtual_addresses = [\"{VIP_V2}/32\"]\n",
        super::vrrp_v4("VI_3", 51, 100, "100ms", "")
    );
    let agent = pair.start_halb(0, &config);
    wait_state(&agent, "VI_3", "master", Duration::from_secs(5));
    wait_state(&agent, "VI_2", "master", Duration::from_secs(10));
    (pair, agent)
}

fn v3(vrid: u8) -> Advert {
    Advert {
        version: Version::V3,
        vrid,
        priority: 200,
        interval: Duration::from_millis(100),
        addresses: vec![VIP.parse().unwrap()],
        password: None,
    }
}

fn v2(vrid: u8, password: [u8; 8]) -> Advert {
    Advert {
        version: Version::V2,
        vrid,
        priority: 200,
        interval: Duration::from_secs(1),
        addresses: vec![VIP_V2.parse().unwrap()],
        password: Some(password),
    }
}

fn encoded(advert: &Advert) -> Vec<u8> {
    encode(
        advert,
        IpAddr::V4(SENDER),
        IpAddr::V4(GROUP),
        ChecksumMode::Rfc,
    )
}

/// Sends `message` to the VRRP group from the client, with `ttl`.
fn inject(pair: &HaPair, message: &[u8], ttl: u8) {
    pair.client.ns.run(|| {
        let socket =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).expect("raw socket");
        socket.set_header_included_v4(true).expect("IP_HDRINCL");
        socket
            .set_multicast_if_v4(&SENDER)
            .expect("multicast interface");
        let total = (20 + message.len()) as u16;
        let mut packet = vec![0x45, 0xc0];
        packet.extend_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
        packet.extend_from_slice(&SENDER.octets());
        packet.extend_from_slice(&GROUP.octets());
        packet.extend_from_slice(message);
        socket
            .send_to(&packet, &SockAddr::from(SocketAddrV4::new(GROUP, 0)))
            .expect("send");
    });
}

/// Sends `message` with `ttl` to the node and checks that `instance`
/// counted it under `reason` alone and stayed master.
fn refused(message: Vec<u8>, ttl: u8, target: &str, reason: &str) {
    let (pair, agent) = node();
    let before = instance(&agent, target);
    inject(&pair, &message, ttl);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let after = loop {
        let now = instance(&agent, target);
        if now["rejected"][reason] == 1 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{target} did not count it as {reason}: {now}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let total: u64 = after["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "counted under other reasons too: {after}");
    assert_eq!(after["adverts_received"], before["adverts_received"]);
    // Give a heeded advert time to act: 3 intervals of the v3 instance.
    std::thread::sleep(Duration::from_millis(300));
    let after = instance(&agent, target);
    assert_eq!(after["state"], "master", "{after}");
    assert_eq!(after["transitions"], before["transitions"], "{after}");
}

#[test]
fn a_bad_checksum_is_counted_and_ignored() {
    let mut message = encoded(&v3(51));
    message[7] ^= 0xff;
    refused(message, 255, "VI_3", "checksum");
}

#[test]
fn ttl_254_is_counted_and_ignored() {
    refused(encoded(&v3(51)), 254, "VI_3", "ttl");
}

#[test]
fn another_vrid_is_counted_and_ignored() {
    refused(encoded(&v3(53)), 255, "VI_3", "vrid");
}

#[test]
fn a_wrong_password_is_counted_and_ignored() {
    refused(encoded(&v2(52, *b"wrongpw\0")), 255, "VI_2", "auth");
}

#[test]
fn a_truncated_advert_is_counted_and_ignored() {
    refused(encoded(&v3(51))[..6].to_vec(), 255, "VI_3", "truncated");
}

#[test]
fn another_version_is_counted_and_ignored() {
    refused(encoded(&v2(51, *PASSWORD)), 255, "VI_3", "version");
}

#[test]
fn well_formed_adverts_of_a_higher_priority_are_heeded() {
    let (pair, agent) = node();
    for (target, message) in [
        ("VI_3", encoded(&v3(51))),
        ("VI_2", encoded(&v2(52, *PASSWORD))),
    ] {
        let before = instance(&agent, target);
        inject(&pair, &message, 255);
        // It steps down, then takes over again once the injected "master"
        // falls silent: count the transitions rather than catch the state.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let now = instance(&agent, target);
            if now["transitions"].as_u64() > before["transitions"].as_u64() {
                assert_eq!(
                    now["adverts_received"].as_u64().unwrap(),
                    before["adverts_received"].as_u64().unwrap() + 1,
                    "{now}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{target} ignored a well-formed advert: {now}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let log = agent.process.lines().snapshot().join("\n");
    assert!(log.contains("master -> backup"), "{log}");
}
