//! Connection-state sync between halb nodes (`[sync]`): every flow the
//! datapath schedules is sent to the peers, which install it in their own
//! flow and NAT maps, so whichever node holds the VIP next forwards the
//! flow's later packets exactly the same way.
//!
//! - [`events`]: the datapath's flow events, from its ring buffer;
//! - [`wire`]: the messages, authenticated with the shared key;
//! - [`peer`]: per peer, batching, acknowledgements, resending, replay
//!   protection, the lag and the stall alarm;
//! - [`table`]: installing a peer's flows, dumping the table for a resync.
//!
//! The task here ties them to one UDP socket. VRRP asks it, through a
//! [`Gate`], to commit what arrived before taking a VIP, and waits for the
//! peers' tables (or the resync timeout) before preempting.

pub mod events;
pub mod lag;
pub mod peer;
pub mod table;
pub mod window;
pub mod wire;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::config::validate::SyncConfig;
use events::FlowEvents;
use peer::{Peer, PeerStatus};
use table::{Directory, FlowTable};
use wire::{Key, Kind, RecordKind};

#[derive(Debug, thiserror::Error)]
pub enum ConnSyncError {
    #[error("cannot listen for sync messages on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the datapath's flow events: {0}")]
    Events(#[source] std::io::Error),
}

/// `halb status`'s sync section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub listen: Option<SocketAddr>,
    /// Every peer's table has arrived, or the resync timeout passed: VRRP
    /// may preempt.
    pub ready: bool,
    pub peers: Vec<PeerStatus>,
    /// Datagrams from addresses that are no peer's.
    pub unknown_sender: u64,
    /// Flow events read from the datapath.
    pub events: u64,
}

enum Command {
    /// Install everything received so far, then answer.
    Commit(oneshot::Sender<()>),
    /// Send everything queued and wait (until the deadline) for the
    /// peers to acknowledge it.
    Flush(Instant, oneshot::Sender<()>),
}

/// What VRRP needs of sync: commit before taking a VIP, and whether the
/// peers' tables are in (no preempting before).
#[derive(Clone)]
pub struct Gate {
    commands: mpsc::Sender<Command>,
    ready: watch::Receiver<bool>,
}

/// How long taking a VIP may wait for the commit.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(200);

impl Gate {
    /// Installs what the peers sent so far; bounded, so that a stuck sync
    /// never keeps a VIP from being taken.
    pub async fn commit(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Commit(tx)).await.is_ok() {
            let _ = tokio::time::timeout(COMMIT_TIMEOUT, rx).await;
        }
    }

    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }
}

/// The running sync task.
pub struct ConnSync {
    commands: mpsc::Sender<Command>,
    ready: watch::Receiver<bool>,
    status: Arc<Mutex<SyncStatus>>,
    directory: watch::Sender<Arc<Directory>>,
    task: JoinHandle<()>,
}

impl ConnSync {
    /// Binds the sync socket and starts the task, which asks every peer
    /// for its table at once.
    pub async fn start(
        config: &SyncConfig,
        events: FlowEvents,
        table: impl FlowTable + Send + 'static,
        directory: Directory,
    ) -> Result<Self, ConnSyncError> {
        let socket =
            UdpSocket::bind(config.listen)
                .await
                .map_err(|source| ConnSyncError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let (commands, command_rx) = mpsc::channel(16);
        let (ready_tx, ready) = watch::channel(false);
        let (directory_tx, directory_rx) = watch::channel(Arc::new(directory));
        let status = Arc::new(Mutex::new(SyncStatus {
            listen: Some(config.listen),
            ..SyncStatus::default()
        }));
        let started = Instant::now();
        let mut peers: Vec<Peer> = config.peers.iter().map(|a| Peer::new(*a)).collect();
        for p in &mut peers {
            p.request_table(started);
        }
        let node = Node {
            socket,
            key: Key::new(&config.key),
            session: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            nonce: 0,
            peers,
            table,
            directory: directory_rx,
            status: status.clone(),
            ready: ready_tx,
            resync_deadline: started + config.resync_timeout,
            unknown_sender: 0,
            events_read: 0,
            stalled: BTreeMap::new(),
            flushes: Vec::new(),
            published: started,
        };
        let task = tokio::spawn(node.run(events, command_rx));
        Ok(Self {
            commands,
            ready,
            status,
            directory: directory_tx,
            task,
        })
    }

    pub fn gate(&self) -> Gate {
        Gate {
            commands: self.commands.clone(),
            ready: self.ready.clone(),
        }
    }

    /// The services and backend ids changed (a reload).
    pub fn set_directory(&self, directory: Directory) {
        let _ = self.directory.send(Arc::new(directory));
    }

    pub fn status(&self) -> SyncStatus {
        self.status.lock().expect("sync status lock").clone()
    }

    /// Sends what is queued and waits, at most `within`, until the peers
    /// have it (a planned stop hands every flow over first).
    pub async fn flush(&self, within: Duration) {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + within;
        if self
            .commands
            .send(Command::Flush(deadline, tx))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(within + Duration::from_millis(50), rx).await;
        }
    }
}

impl Drop for ConnSync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task's state.
struct Node<T> {
    socket: UdpSocket,
    key: Key,
    /// This run's session: its start time, so it grows across restarts.
    session: u64,
    nonce: u64,
    peers: Vec<Peer>,
    table: T,
    directory: watch::Receiver<Arc<Directory>>,
    status: Arc<Mutex<SyncStatus>>,
    ready: watch::Sender<bool>,
    resync_deadline: Instant,
    unknown_sender: u64,
    events_read: u64,
    /// Peers whose stall alarm is raised (logged once per stall).
    stalled: BTreeMap<SocketAddr, bool>,
    flushes: Vec<(Instant, oneshot::Sender<()>)>,
    published: Instant,
}

/// The task wakes at least this often while anything waits to be sent or
/// acknowledged (a batch is due every 10 ms)...
const BUSY_TICK: Duration = Duration::from_millis(2);
/// ...and this often otherwise.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// Status is published this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl<T: FlowTable> Node<T> {
    async fn run(mut self, mut events: FlowEvents, mut commands: mpsc::Receiver<Command>) {
        self.offer_table();
        let mut buf = vec![0u8; 2048];
        let mut events_ok = true;
        loop {
            let busy = self.peers.iter().any(|p| !p.idle());
            let tick = if busy { BUSY_TICK } else { IDLE_TICK };
            tokio::select! {
                read = events.next(), if events_ok => match read {
                    Ok(batch) => {
                        let now = Instant::now();
                        self.events_read += batch.len() as u64;
                        for (record, at) in batch {
                            for p in &mut self.peers {
                                p.queue(record, Some(at), now);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flow events unreadable: new flows are no longer synced");
                        events_ok = false;
                    }
                },
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, from)) = received {
                        self.on_datagram(&buf[..len], from);
                    }
                    // Drain what else is queued before answering.
                    self.drain_socket(&mut buf);
                }
                Some(command) = commands.recv() => match command {
                    Command::Commit(done) => {
                        self.drain_socket(&mut buf);
                        let _ = done.send(());
                    }
                    Command::Flush(deadline, done) => self.flushes.push((deadline, done)),
                },
                _ = tokio::time::sleep(tick) => {}
            }
            self.transmit();
            self.housekeeping();
        }
    }

    /// A starting node offers its peers what its datapath holds (flows made
    /// while no agent ran, and those whose events died with the last
    /// agent); they install only what they do not know.
    fn offer_table(&mut self) {
        let flows = self.queue_table(None, RecordKind::Offer);
        if flows > 0 {
            tracing::info!(flows, "sync offers the pinned flow table to the peers");
        }
    }

    fn drain_socket(&mut self, buf: &mut [u8]) {
        for _ in 0..1024 {
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => self.on_datagram(&buf[..len], from),
                Err(_) => break,
            }
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let Some(index) = self.peers.iter().position(|p| p.addr.ip() == from.ip()) else {
            self.unknown_sender += 1;
            return;
        };
        let message = match wire::decode(datagram, &self.key) {
            Ok(m) => m,
            Err(e) => {
                self.peers[index].reject(e.name());
                tracing::debug!(peer = %from, reason = e.name(), "sync message refused");
                return;
            }
        };
        let received = self.peers[index].receive(message, self.session, now);
        if received.new_session {
            tracing::info!(peer = %from, "sync peer restarted");
        }
        let directory = self.directory.borrow().clone();
        for m in received.deliver {
            match m.kind {
                Kind::Flows => {
                    let mut refused = 0;
                    for record in &m.records {
                        if self.table.install(record, &directory).is_err() {
                            refused += 1;
                        }
                    }
                    self.peers[index].refused(refused);
                }
                Kind::ResyncRequest => {
                    let started = Instant::now();
                    let count = self.queue_table(Some(index), RecordKind::Table);
                    let peer = &mut self.peers[index];
                    peer.queue_control(Kind::ResyncDone);
                    peer.table_sent();
                    tracing::info!(peer = %from, flows = count, took_ms = started.elapsed().as_millis() as u64, "sync table sent to peer");
                }
                Kind::ResyncDone => {
                    if let peer::ResyncStatus::Done { flows, millis } =
                        self.peers[index].status(now).resync
                    {
                        tracing::info!(peer = %from, flows, millis, "sync table received from peer");
                    }
                }
                Kind::Heartbeat => {}
            }
        }
    }

    fn transmit(&mut self) {
        let now = Instant::now();
        for i in 0..self.peers.len() {
            if self.peers[i].take_needs_table(now) {
                // It fell too far behind for resending: the whole table.
                self.queue_table(Some(i), RecordKind::Table);
                self.peers[i].table_sent();
            }
            let peer = &mut self.peers[i];
            for m in peer.outgoing(now, self.session, &mut self.nonce) {
                let bytes = wire::encode(&m, &self.key);
                // A full socket buffer loses the datagram; it is resent.
                let _ = self.socket.try_send_to(&bytes, peer.addr);
            }
        }
    }

    /// Queues every live flow, as `kind` records, to peer `to` (or all);
    /// returns how many flows.
    fn queue_table(&mut self, to: Option<usize>, kind: RecordKind) -> usize {
        let directory = self.directory.borrow().clone();
        let flows = self.table.dump(&directory, kind);
        let now = Instant::now();
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if to.is_none_or(|t| t == i) {
                for record in &flows {
                    peer.queue(*record, None, now);
                }
            }
        }
        flows.len()
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let ready = now >= self.resync_deadline || self.peers.iter().all(Peer::table_received);
        if ready && !*self.ready.borrow() {
            tracing::info!(
                tables = self.peers.iter().filter(|p| p.table_received()).count(),
                peers = self.peers.len(),
                "sync ready: VRRP may preempt"
            );
            let _ = self.ready.send(true);
        }
        for p in &self.peers {
            let stalled = p.stalled(now);
            let was = self.stalled.insert(p.addr, stalled).unwrap_or(false);
            if stalled && !was {
                tracing::warn!(peer = %p.addr, connected = p.connected(now), "sync stalled: the peer has not acknowledged for over a second");
            } else if was && !stalled {
                tracing::info!(peer = %p.addr, "sync stall over");
            }
        }
        let all_idle = self.peers.iter().all(|p| p.idle() || !p.connected(now));
        let mut i = 0;
        while i < self.flushes.len() {
            if all_idle || now >= self.flushes[i].0 {
                let (_, done) = self.flushes.swap_remove(i);
                let _ = done.send(());
            } else {
                i += 1;
            }
        }
        if now.duration_since(self.published) >= PUBLISH_EVERY {
            self.publish(now);
        }
    }

    fn publish(&mut self, now: Instant) {
        self.published = now;
        let mut status = self.status.lock().expect("sync status lock");
        status.ready = *self.ready.borrow();
        status.peers = self.peers.iter().map(|p| p.status(now)).collect();
        status.unknown_sender = self.unknown_sender;
        status.events = self.events_read;
    }
}
