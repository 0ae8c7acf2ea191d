//! Connection tracking and scheduling: flows keep their backend across
//! table changes, move when it fails, stay when it drains; and the drops
//! for no backend, no route, no neighbour and no free NAT port.

use std::net::IpAddr;

use halb::dataplane::sync::BackendState;
use halb_common::addr::PROTO_TCP;

use super::{
    cases_forward::PORTS,
    flow_key,
    harness::{Arms, CLIENT_MAC, Fixture, LB_MAC, XDP_DROP, XDP_TX, assert_frame, with_fixture},
    pkt::{self, L3, Tcp, ip},
};

const VIP: &str = "198.18.0.100";

fn three_backends(weights: [u32; 3], affinity: &str) -> String {
    let mut s = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nmode = \"dsr\"\naffinity = \"{affinity}\"\n"
    );
    for (i, w) in weights.iter().enumerate() {
        s += &format!(
            "[[service.backend]]\naddress = \"198.18.0.{}\"\nweight = {w}\n",
            11 + i
        );
    }
    s
}

/// Sends a segment from client port `sport` and returns the backend's
/// address (DSR: read from the destination MAC, 02:..:1N for 198.18.0.1N).
fn backend_of(fx: &mut Fixture, sport: u16, flags: Tcp) -> Option<IpAddr> {
    let input = pkt::tcp(
        (CLIENT_MAC, LB_MAC),
        (ip("198.18.0.10"), sport),
        (ip(VIP), 80),
        flags,
    );
    let out = fx.run(fx.lan0.ifindex, &input);
    (out.action == XDP_TX).then(|| ip(&format!("198.18.0.{}", 10 + out.data[5] - 0x10)))
}

#[test]
fn a_flow_keeps_its_backend_when_the_table_changes() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(&three_backends([1, 0, 0], "none"));
        let first = backend_of(fx, 40000, Tcp::Syn).expect("forwarded");
        assert_eq!(first, ip("198.18.0.11"));
        // Backend 1 leaves the table (weight 0): new flows go elsewhere...
        fx.apply(&three_backends([0, 1, 1], "none"));
        for sport in 41000..41020 {
            assert_ne!(
                backend_of(fx, sport, Tcp::Syn),
                Some(first),
                "new flow {sport}"
            );
        }
        // ...but the established flow stays where it was.
        assert_eq!(backend_of(fx, 40000, Tcp::Ack), Some(first));
    });
}

#[test]
fn a_flow_moves_when_its_backend_goes_down_and_stays_when_it_drains() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(&three_backends([1, 1, 1], "none"));
        let sport = 40000;
        let first = backend_of(fx, sport, Tcp::Syn).expect("forwarded");
        let addr = std::net::SocketAddr::new(first, 80);

        fx.sync
            .set_backend_state(&mut fx.dp.maps, "web", addr, BackendState::Draining)
            .expect("drain");
        assert_eq!(
            backend_of(fx, sport, Tcp::Ack),
            Some(first),
            "draining keeps flows"
        );

        fx.sync
            .set_backend_state(&mut fx.dp.maps, "web", addr, BackendState::Down)
            .expect("down");
        let moved = backend_of(fx, sport, Tcp::Ack).expect("rescheduled, not dropped");
        assert_ne!(moved, first);
        let flow = fx
            .dp
            .maps
            .flows
            .get(
                &flow_key((ip("198.18.0.10"), sport), (ip(VIP), 80), PROTO_TCP),
                0,
            )
            .expect("tracked");
        assert_eq!(ip(&format!("198.18.0.{}", 11 + flow.backend_id)), moved);
    });
}

#[test]
fn source_affinity_keeps_a_client_on_one_backend() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(&three_backends([1, 1, 1], "source"));
        // Forwarded, each one: the same backend for dropped flows proves nothing.
        let first = backend_of(fx, 40000, Tcp::Syn).expect("forwarded");
        for sport in 40001..40050 {
            assert_eq!(backend_of(fx, sport, Tcp::Syn), Some(first), "port {sport}");
        }
        fx.apply(&three_backends([1, 1, 1], "none"));
        let spread: std::collections::HashSet<_> = (42000..42050)
            .filter_map(|p| backend_of(fx, p, Tcp::Syn))
            .collect();
        assert!(spread.len() > 1, "5-tuple hashing spreads a client's flows");
    });
}

#[test]
fn no_backend_up_means_drop() {
    with_fixture(Arms::One, PORTS, |fx| {
        fx.apply(&three_backends([1, 1, 1], "none"));
        for n in 11..=13 {
            let addr = std::net::SocketAddr::new(ip(&format!("198.18.0.{n}")), 80);
            fx.sync
                .set_backend_state(&mut fx.dp.maps, "web", addr, BackendState::Down)
                .expect("down");
        }
        assert_eq!(backend_of(fx, 40000, Tcp::Syn), None);
        assert_eq!(fx.verdicts().drop_no_backend, 1);
    });
}

#[test]
fn no_neighbour_and_no_route_are_dropped_not_misforwarded() {
    with_fixture(Arms::One, PORTS, |fx| {
        // .50 is on lan0's subnet but has no neighbour entry; 198.19.5.5 has no route.
        fx.apply(
            r#"
[[service]]
name = "unresolved"
vip = "198.18.0.100"
port = 80
snat_address = "198.18.0.2"
[[service.backend]]
address = "198.18.0.50"
[[service]]
name = "unroutable"
vip = "198.18.0.101"
port = 80
snat_address = "198.18.0.2"
[[service.backend]]
address = "198.19.5.5"
"#,
        );
        let client = (ip("198.18.0.10"), 40000);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, (ip(VIP), 80), Tcp::Syn),
        );
        assert_eq!(out.action, XDP_DROP);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp(
                (CLIENT_MAC, LB_MAC),
                client,
                (ip("198.18.0.101"), 80),
                Tcp::Syn,
            ),
        );
        assert_eq!(out.action, XDP_DROP);
        let v = fx.verdicts();
        assert_eq!((v.drop_no_neighbour, v.drop_no_route), (1, 1), "{v:?}");
    });
}

#[test]
fn full_nat_never_gives_two_flows_the_same_port() {
    // One NAT port in all: the second flow to the same backend must not share it.
    with_fixture(Arms::One, (20000, 20000), |fx| {
        fx.apply(
            r#"
[[service]]
name = "web"
vip = "198.18.0.100"
port = 80
snat_address = "198.18.0.2"
[[service.backend]]
address = "198.18.0.11"
"#,
        );
        let vip = (ip(VIP), 80);
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp(
                (CLIENT_MAC, LB_MAC),
                (ip("198.18.0.10"), 40000),
                vip,
                Tcp::Syn,
            ),
        );
        assert_eq!(out.action, XDP_TX);
        assert_eq!(
            u16::from_be_bytes([out.data[L3 + 20], out.data[L3 + 21]]),
            20000
        );
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp(
                (CLIENT_MAC, LB_MAC),
                (ip("198.18.0.10"), 40001),
                vip,
                Tcp::Syn,
            ),
        );
        assert_eq!(out.action, XDP_DROP);
        assert_eq!(fx.verdicts().drop_nat_ports, 1);
    });
}

#[test]
fn no_backend_up_with_reset_policy_answers_a_reset() {
    with_fixture(Arms::One, PORTS, |fx| {
        let mut config = three_backends([1, 1, 1], "none");
        config = config.replacen(
            "mode = \"dsr\"\n",
            "mode = \"dsr\"\nwhen_all_down = \"reset\"\n",
            1,
        );
        fx.apply(&config);
        for n in 11..=13 {
            let addr = std::net::SocketAddr::new(ip(&format!("198.18.0.{n}")), 80);
            fx.sync
                .set_backend_state(&mut fx.dp.maps, "web", addr, BackendState::Down)
                .expect("down");
        }
        let client = (ip("198.18.0.10"), 40000);
        let vip = (ip(VIP), 80);
        // A SYN (seq 1000, with the fixture's 20-byte payload): reset with
        // sequence 0, acknowledging the SYN and the payload.
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Syn),
        );
        assert_eq!(out.action, XDP_TX);
        let mut want = etherparse::TcpHeader::new(80, 40000, 0, 0);
        want.rst = true;
        want.ack = true;
        want.acknowledgment_number = 1000 + pkt::PAYLOAD.len() as u32 + 1;
        assert_frame(
            "reset for a SYN",
            &out.data,
            &pkt::tcp_with((LB_MAC, CLIENT_MAC), vip.0, client.0, want, &[]),
        );
        // A segment with ACK (ack 5000): reset with that sequence number.
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Ack),
        );
        assert_eq!(out.action, XDP_TX);
        let mut want = etherparse::TcpHeader::new(80, 40000, 5000, 0);
        want.rst = true;
        assert_frame(
            "reset for an ACK",
            &out.data,
            &pkt::tcp_with((LB_MAC, CLIENT_MAC), vip.0, client.0, want, &[]),
        );
        // A reset is never answered.
        let out = fx.run(
            fx.lan0.ifindex,
            &pkt::tcp((CLIENT_MAC, LB_MAC), client, vip, Tcp::Rst),
        );
        assert_eq!(out.action, XDP_DROP);
        let v = fx.verdicts();
        assert_eq!((v.reset_no_backend, v.drop_no_backend), (2, 1), "{v:?}");
    });
}
