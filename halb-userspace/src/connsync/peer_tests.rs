//! Two nodes' protocol state wired back to back through the real codec,
//! with a clock the test moves and a network that loses what it is told.

use std::time::{Duration, Instant};

use super::*;
use crate::connsync::wire::{self, FlowMode, Key, RecordKind};

const SESSION_A: u64 = 1_000;
const SESSION_B: u64 = 2_000;

fn record(port: u16) -> FlowRecord {
    FlowRecord {
        kind: RecordKind::New,
        mode: FlowMode::FullNat {
            snat: "198.18.0.101:10001".parse().unwrap(),
        },
        closing: false,
        proto: 6,
        client: SocketAddr::new("198.18.0.10".parse().unwrap(), port),
        vip: "198.18.0.100:80".parse().unwrap(),
        backend: "198.18.0.11:80".parse().unwrap(),
        client_mac: [2, 0, 0, 0, 0, 10],
        age_ms: 0,
    }
}

/// One side: its view of the other peer, its session and nonces.
struct Side {
    peer: Peer,
    session: u64,
    nonce: u64,
    delivered: Vec<Message>,
}

impl Side {
    fn new(session: u64, other: &str) -> Self {
        Self {
            peer: Peer::new(other.parse().unwrap()),
            session,
            nonce: 0,
            delivered: Vec::new(),
        }
    }

    /// What this side sends now, stamped and encoded.
    fn send(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let key = Key::new(b"a shared key, 16+ bytes");
        self.peer
            .outgoing(now, self.session, &mut self.nonce)
            .iter()
            .map(|m| wire::encode(m, &key))
            .collect()
    }

    fn take(&mut self, datagram: &[u8], now: Instant) -> Received {
        let key = Key::new(b"a shared key, 16+ bytes");
        let m = wire::decode(datagram, &key).expect("authentic");
        let received = self.peer.receive(m, self.session, now);
        self.delivered.extend(received.deliver.iter().cloned());
        received
    }
}

fn pair() -> (Side, Side) {
    (
        Side::new(SESSION_A, "198.18.0.3:7900"),
        Side::new(SESSION_B, "198.18.0.2:7900"),
    )
}

/// Delivers what `from` sends to `to`, except datagrams `lose` picks.
fn exchange(from: &mut Side, to: &mut Side, now: Instant, mut lose: impl FnMut(usize) -> bool) {
    for (i, d) in from.send(now).into_iter().enumerate() {
        if !lose(i) {
            to.take(&d, now);
        }
    }
}

fn delivered_ports(side: &Side) -> Vec<u16> {
    side.delivered
        .iter()
        .flat_map(|m| m.records.iter().map(|r| r.client.port()))
        .collect()
}

#[test]
fn records_are_batched_for_ten_ms_then_delivered_and_acknowledged() {
    let (mut a, mut b) = pair();
    let t0 = Instant::now();
    for port in 1..=3 {
        a.peer.queue(record(port), Some(t0), t0);
    }
    // Only a heartbeat before the batch is due.
    let early = a.peer.transmit(t0 + Duration::from_millis(5));
    assert!(early.iter().all(|m| m.kind == Kind::Heartbeat), "{early:?}");
    let t1 = t0 + BATCH_EVERY;
    exchange(&mut a, &mut b, t1, |_| false);
    assert_eq!(delivered_ports(&b), vec![1, 2, 3]);
    assert!(!a.peer.idle(), "unacked until b answers");
    // b's ack (a heartbeat, due because a reliable message came).
    let t2 = t1 + Duration::from_millis(1);
    exchange(&mut b, &mut a, t2, |_| false);
    assert!(a.peer.idle());
    let status = a.peer.status(t2);
    assert_eq!(status.flows_sent, 3);
    assert_eq!(status.lag.samples, 3);
    assert!(status.lag.max_ms.unwrap() <= 11.1, "{:?}", status.lag);
    assert!(status.connected && !status.stalled);
}

#[test]
fn a_full_batch_goes_out_at_once() {
    let (mut a, mut b) = pair();
    let t0 = Instant::now();
    for port in 0..wire::MAX_RECORDS as u16 {
        a.peer.queue(record(port), Some(t0), t0);
    }
    exchange(&mut a, &mut b, t0, |_| false);
    assert_eq!(delivered_ports(&b).len(), wire::MAX_RECORDS);
}

#[test]
fn a_lost_message_is_resent_and_nothing_overtakes_it() {
    let (mut a, mut b) = pair();
    let mut now = Instant::now();
    a.peer.queue(record(1), Some(now), now);
    a.peer.queue_control(Kind::ResyncDone); // seals 1, then a 2nd message
    a.peer.queue(record(3), Some(now), now);
    now += BATCH_EVERY;
    // The first of three messages is lost.
    exchange(&mut a, &mut b, now, |i| i == 0);
    assert!(b.delivered.is_empty(), "2 and 3 wait for 1");
    exchange(&mut b, &mut a, now, |_| false);
    now += Duration::from_millis(50);
    exchange(&mut a, &mut b, now, |_| false);
    let kinds: Vec<Kind> = b.delivered.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![Kind::Flows, Kind::ResyncDone, Kind::Flows]);
    assert_eq!(delivered_ports(&b), vec![1, 3]);
    assert!(a.peer.status(now).messages_resent >= 1);
    exchange(&mut b, &mut a, now, |_| false);
    assert!(a.peer.idle());
}

#[test]
fn replays_and_an_older_session_change_nothing() {
    let (mut a, mut b) = pair();
    let now = Instant::now();
    a.peer.queue(record(1), Some(now), now);
    let sent = a.send(now + BATCH_EVERY);
    for d in &sent {
        b.take(d, now);
    }
    let before = b.delivered.len();
    for d in &sent {
        let r = b.take(d, now);
        assert!(r.deliver.is_empty());
    }
    assert_eq!(b.delivered.len(), before);
    assert_eq!(
        b.peer.status(now).rejected.get("replayed"),
        Some(&(sent.len() as u64))
    );
    // a restarts with a newer session; its old session's messages are stale.
    let mut a2 = Side::new(SESSION_A + 1, "198.18.0.3:7900");
    a2.peer.queue(record(9), Some(now), now);
    for d in a2.send(now + BATCH_EVERY) {
        assert!(b.take(&d, now).new_session);
    }
    for d in &sent {
        b.take(d, now);
    }
    assert_eq!(
        b.peer.status(now).rejected.get("old_session"),
        Some(&(sent.len() as u64))
    );
    assert_eq!(delivered_ports(&b), vec![1, 9]);
}

#[test]
fn a_peer_that_never_acknowledges_raises_the_stall_alarm() {
    let (mut a, mut b) = pair();
    let t0 = Instant::now();
    a.peer.queue(record(1), Some(t0), t0);
    exchange(&mut a, &mut b, t0 + BATCH_EVERY, |_| false);
    // b hears everything but its answers are lost; a still hears nothing.
    let mut now = t0 + BATCH_EVERY;
    while now < t0 + Duration::from_millis(1500) {
        now += Duration::from_millis(50);
        exchange(&mut a, &mut b, now, |_| false);
        exchange(&mut b, &mut a, now, |_| true);
    }
    assert!(a.peer.stalled(now));
    assert!(!a.peer.connected(now));
    // Once b is heard again (its next heartbeat), the alarm clears.
    now += HEARTBEAT_EVERY;
    exchange(&mut b, &mut a, now, |_| false);
    assert!(!a.peer.stalled(now) && a.peer.idle());
}

#[test]
fn a_table_request_is_answered_and_timed() {
    let (mut a, mut b) = pair();
    let t0 = Instant::now();
    a.peer.request_table(t0);
    assert!(!a.peer.table_received());
    exchange(&mut a, &mut b, t0, |_| false);
    assert_eq!(b.delivered[0].kind, Kind::ResyncRequest);
    // b answers with its table (as the task does) and the end marker.
    for port in 0..40 {
        let mut r = record(port);
        r.kind = RecordKind::Table;
        b.peer.queue(r, None, t0);
    }
    b.peer.queue_control(Kind::ResyncDone);
    let t1 = t0 + Duration::from_millis(3);
    exchange(&mut b, &mut a, t1, |_| false);
    assert!(a.peer.table_received());
    assert_eq!(
        a.peer.status(t1).resync,
        ResyncStatus::Done {
            flows: 40,
            millis: 3
        }
    );
    assert_eq!(delivered_ports(&a).len(), 40);
}
