//! One peer's side of the protocol, without sockets or clocks of its own
//! (both are passed in, so tests drive it): what to send it (batches,
//! resends, heartbeats), and what to make of what it sends (replays,
//! order, acknowledgements, the lag they measure).
//!
//! Reliability follows conntrackd's FTFW: reliable messages are numbered,
//! acknowledged cumulatively, and resent until acknowledged; the receiver
//! delivers them in order, so a flow's close never overtakes its start.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{
    lag::{LagHistogram, LagSummary},
    window::ReplayWindow,
    wire::{FlowRecord, Kind, MAX_RECORDS, Message},
};

/// A batch goes out at least this often while records wait.
pub const BATCH_EVERY: Duration = Duration::from_millis(10);
/// A sign of life (and the latest ack) when nothing else was sent.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
/// A peer not heard from for this long is disconnected.
pub const DEAD_AFTER: Duration = Duration::from_millis(1000);
/// A reliable message unacknowledged this long raises the stall alarm.
pub const STALL_AFTER: Duration = Duration::from_millis(1000);
/// Resend an unacknowledged message after this long (a connected peer)...
const RESEND_AFTER: Duration = Duration::from_millis(40);
/// ...or this long, to a peer not heard from.
const RESEND_DEAD_AFTER: Duration = Duration::from_millis(1000);
/// Reliable messages kept for resending; past that the peer is too far
/// behind, the queue is dropped and the peer gets the whole table instead.
const MAX_UNACKED: usize = 16_384;
/// Messages ahead of a gap kept until the gap is filled.
const MAX_REORDER: usize = 4096;

/// What a peer's sync looks like, for `halb status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: SocketAddr,
    /// Heard from within the last second.
    pub connected: bool,
    /// A message has waited more than a second for its acknowledgement:
    /// the peer hears nothing of ours, or cannot keep up.
    pub stalled: bool,
    pub flows_sent: u64,
    pub flows_received: u64,
    /// Flows received that could not be installed (no such service or
    /// backend here).
    pub flows_refused: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Reliable messages the peer sent that never arrived the first time
    /// (gaps in its numbering), and messages this node sent again.
    pub messages_lost: u64,
    pub messages_resent: u64,
    /// Unacknowledged messages dropped because the peer was too far behind
    /// (it is sent the whole table instead).
    pub messages_dropped: u64,
    pub unacked: usize,
    /// Messages refused, by reason (bad_mac, replayed, malformed...).
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Bulk resync of this node's table from the peer.
    pub resync: ResyncStatus,
    /// Tables sent to the peer on its request.
    pub tables_sent: u64,
    pub lag: LagSummary,
}

/// Where the bulk resync from a peer stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ResyncStatus {
    /// Not asked (this node started with the peer's table already).
    #[default]
    NotAsked,
    Requested,
    Done {
        flows: u64,
        millis: u64,
    },
}

/// A reliable message sent and not acknowledged yet.
struct Unacked {
    message: Message,
    /// When each record's flow event happened (None: from a table dump).
    event_times: Vec<Option<Instant>>,
    /// None: not sent yet.
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

/// The peer's current session, as received.
struct Inbound {
    session: u64,
    window: ReplayWindow,
    /// Every reliable message up to this one was delivered (None: none
    /// seen in this session yet).
    delivered: Option<u64>,
    /// Highest sequence number seen, to count gaps.
    highest: u64,
    ahead: BTreeMap<u64, Message>,
}

/// What [`Peer::receive`] makes of a message.
#[derive(Debug, Default)]
pub struct Received {
    /// Reliable messages now deliverable, in order.
    pub deliver: Vec<Message>,
    /// The peer restarted (a new session): it will ask for the table.
    pub new_session: bool,
}

pub struct Peer {
    pub addr: SocketAddr,
    next_seq: u64,
    pending: Vec<(FlowRecord, Option<Instant>)>,
    pending_since: Option<Instant>,
    unacked: VecDeque<Unacked>,
    inbound: Option<Inbound>,
    last_heard: Option<Instant>,
    last_sent: Option<Instant>,
    /// A reliable message arrived since the last ack sent.
    ack_due: bool,
    /// The peer fell too far behind: it gets the whole table when heard.
    needs_table: bool,
    resync_started: Option<Instant>,
    resync_flows: u64,
    lag: LagHistogram,
    status: PeerStatus,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            next_seq: 1,
            pending: Vec::new(),
            pending_since: None,
            unacked: VecDeque::new(),
            inbound: None,
            last_heard: None,
            last_sent: None,
            ack_due: false,
            needs_table: false,
            resync_started: None,
            resync_flows: 0,
            lag: LagHistogram::default(),
            status: PeerStatus {
                address: addr,
                connected: false,
                stalled: false,
                flows_sent: 0,
                flows_received: 0,
                flows_refused: 0,
                messages_sent: 0,
                messages_received: 0,
                messages_lost: 0,
                messages_resent: 0,
                messages_dropped: 0,
                unacked: 0,
                rejected: Default::default(),
                resync: ResyncStatus::NotAsked,
                tables_sent: 0,
                lag: LagSummary::default(),
            },
        }
    }

    /// Queues `record` for the next batch; `event` is when the datapath
    /// reported it. A full batch is sealed at once.
    pub fn queue(&mut self, record: FlowRecord, event: Option<Instant>, now: Instant) {
        if self.pending.is_empty() {
            self.pending_since = Some(now);
        }
        self.pending.push((record, event));
        if self.pending.len() >= MAX_RECORDS {
            self.seal_batch();
        }
    }

    /// Queues a reliable control message (resync request or done).
    pub fn queue_control(&mut self, kind: Kind) {
        // After the records queued before it.
        self.seal_batch();
        self.push_reliable(kind, Vec::new(), Vec::new());
    }

    /// Asks the peer for its whole table.
    pub fn request_table(&mut self, now: Instant) {
        self.resync_started = Some(now);
        self.resync_flows = 0;
        self.status.resync = ResyncStatus::Requested;
        self.queue_control(Kind::ResyncRequest);
    }

    /// Whether the peer's table has arrived (or none was asked for).
    pub fn table_received(&self) -> bool {
        self.status.resync != ResyncStatus::Requested
    }

    /// Turns the records waiting into one reliable message.
    fn seal_batch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (records, times): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        self.pending_since = None;
        self.push_reliable(Kind::Flows, records, times);
    }

    fn push_reliable(
        &mut self,
        kind: Kind,
        records: Vec<FlowRecord>,
        event_times: Vec<Option<Instant>>,
    ) {
        if self.unacked.len() >= MAX_UNACKED {
            // The peer is gone or far behind: resending all of this would
            // take longer than sending what is left when it is back.
            self.status.messages_dropped += self.unacked.len() as u64;
            self.unacked.clear();
            self.needs_table = true;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back(Unacked {
            message: Message {
                kind,
                session: 0,
                nonce: 0,
                seq,
                base: 0,
                ack_session: 0,
                ack: 0,
                records,
            },
            event_times,
            first_sent: None,
            last_sent: None,
        });
    }

    /// What to send now: batches due, resends due, a heartbeat or an ack;
    /// unstamped (see [`Peer::outgoing`]).
    fn transmit(&mut self, now: Instant) -> Vec<Message> {
        if self
            .pending_since
            .is_some_and(|since| now.duration_since(since) >= BATCH_EVERY)
        {
            self.seal_batch();
        }
        let resend_after = if self.connected(now) {
            RESEND_AFTER
        } else {
            RESEND_DEAD_AFTER
        };
        let mut out = Vec::new();
        for u in self.unacked.iter_mut() {
            if u.last_sent
                .is_some_and(|at| now.duration_since(at) < resend_after)
            {
                continue;
            }
            if u.first_sent.is_none() {
                u.first_sent = Some(now);
                self.status.flows_sent += u.message.records.len() as u64;
            } else {
                self.status.messages_resent += 1;
            }
            u.last_sent = Some(now);
            out.push(u.message.clone());
        }
        let quiet = self
            .last_sent
            .is_none_or(|at| now.duration_since(at) >= HEARTBEAT_EVERY);
        if out.is_empty() && (self.ack_due || quiet) {
            out.push(Message {
                kind: Kind::Heartbeat,
                session: 0,
                nonce: 0,
                seq: 0,
                base: 0,
                ack_session: 0,
                ack: 0,
                records: Vec::new(),
            });
        }
        if !out.is_empty() {
            self.ack_due = false;
            self.last_sent = Some(now);
            self.status.messages_sent += out.len() as u64;
        }
        out
    }

    /// [`Peer::transmit`]'s messages, stamped: this node's `session`, a
    /// fresh nonce each from `nonce`, and the base and ack of now.
    pub fn outgoing(&mut self, now: Instant, session: u64, nonce: &mut u64) -> Vec<Message> {
        let mut messages = self.transmit(now);
        let (ack_session, ack) = self.ack();
        let base = self.base();
        for m in &mut messages {
            *nonce += 1;
            m.session = session;
            m.nonce = *nonce;
            m.base = base;
            m.ack_session = ack_session;
            m.ack = ack;
        }
        messages
    }

    /// The oldest reliable message still held for resending (or the next
    /// to come): the peer need not wait for any before it.
    pub fn base(&self) -> u64 {
        self.unacked
            .front()
            .map_or(self.next_seq, |u| u.message.seq)
    }

    /// The ack this node owes the peer: its session and the last reliable
    /// message delivered in order.
    pub fn ack(&self) -> (u64, u64) {
        match &self.inbound {
            Some(i) => (i.session, i.delivered.unwrap_or(0)),
            None => (0, 0),
        }
    }

    /// Takes in an authenticated message from the peer; `our_session` is
    /// this node's. Replays and messages of an older session are refused.
    pub fn receive(&mut self, message: Message, our_session: u64, now: Instant) -> Received {
        let mut received = Received::default();
        match &self.inbound {
            Some(i) if message.session < i.session => {
                self.reject("old_session");
                return received;
            }
            Some(i) if message.session == i.session => {}
            previous => {
                received.new_session = previous.is_some();
                self.inbound = Some(Inbound {
                    session: message.session,
                    window: ReplayWindow::default(),
                    delivered: None,
                    highest: 0,
                    ahead: BTreeMap::new(),
                });
            }
        }
        let inbound = self.inbound.as_mut().expect("set above");
        if !inbound.window.accept(message.nonce) {
            self.reject("replayed");
            return received;
        }
        self.status.messages_received += 1;
        self.last_heard = Some(now);
        if message.ack_session == our_session {
            self.acknowledged(message.ack, now);
        }
        if message.kind.reliable() {
            self.ack_due = true;
            let inbound = self.inbound.as_mut().expect("set above");
            // What the sender no longer holds will never come: a restarted
            // receiver (or one the sender gave up on) starts at its base,
            // and the table resync covers what came before.
            let mut delivered = inbound.delivered.unwrap_or(0);
            if message.base > delivered + 1 {
                if inbound.delivered.is_some() {
                    self.status.messages_lost += message.base - delivered - 1;
                }
                delivered = message.base - 1;
                inbound.ahead.retain(|seq, _| *seq > delivered);
                inbound.highest = inbound.highest.max(delivered);
            }
            if message.seq > delivered && inbound.ahead.len() < MAX_REORDER {
                if message.seq > inbound.highest + 1 {
                    self.status.messages_lost += message.seq - inbound.highest - 1;
                }
                inbound.highest = inbound.highest.max(message.seq);
                inbound.ahead.insert(message.seq, message);
            }
            let mut next = delivered + 1;
            while let Some(m) = inbound.ahead.remove(&next) {
                received.deliver.push(m);
                next += 1;
            }
            inbound.delivered = Some(next - 1);
        }
        for m in &received.deliver {
            self.status.flows_received += m.records.len() as u64;
            match m.kind {
                Kind::Flows if self.status.resync == ResyncStatus::Requested => {
                    self.resync_flows += m.records.len() as u64;
                }
                Kind::ResyncDone if self.status.resync == ResyncStatus::Requested => {
                    let took = self
                        .resync_started
                        .map_or(Duration::ZERO, |s| now.duration_since(s));
                    self.status.resync = ResyncStatus::Done {
                        flows: self.resync_flows,
                        millis: took.as_millis() as u64,
                    };
                }
                _ => {}
            }
        }
        received
    }

    /// The peer has everything up to `ack`: forget it, and time the lag.
    fn acknowledged(&mut self, ack: u64, now: Instant) {
        while self.unacked.front().is_some_and(|u| u.message.seq <= ack) {
            let u = self.unacked.pop_front().expect("front exists");
            for at in u.event_times.into_iter().flatten() {
                self.lag.record(now.saturating_duration_since(at));
            }
        }
    }

    /// Whether the peer must be sent the whole table (it fell behind);
    /// clears the flag.
    pub fn take_needs_table(&mut self, now: Instant) -> bool {
        let due = self.needs_table && self.connected(now);
        if due {
            self.needs_table = false;
        }
        due
    }

    /// Counts a whole table sent to the peer.
    pub fn table_sent(&mut self) {
        self.status.tables_sent += 1;
    }

    pub fn reject(&mut self, reason: &str) {
        *self.status.rejected.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn refused(&mut self, flows: u64) {
        self.status.flows_refused += flows;
    }

    pub fn connected(&self, now: Instant) -> bool {
        self.last_heard
            .is_some_and(|at| now.duration_since(at) < DEAD_AFTER)
    }

    /// Whether a message has waited too long for its acknowledgement.
    pub fn stalled(&self, now: Instant) -> bool {
        self.unacked
            .front()
            .and_then(|u| u.first_sent)
            .is_some_and(|at| now.duration_since(at) > STALL_AFTER)
    }

    /// Nothing waits to be sent or acknowledged.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.unacked.is_empty()
    }

    pub fn status(&self, now: Instant) -> PeerStatus {
        PeerStatus {
            connected: self.connected(now),
            stalled: self.stalled(now),
            unacked: self.unacked.len(),
            lag: self.lag.summary(),
            ..self.status.clone()
        }
    }

    pub fn lag(&self) -> &LagHistogram {
        &self.lag
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
