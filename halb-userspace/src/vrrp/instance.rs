//! One VRRP instance at work: a task that owns the socket, the state
//! machine and the timers (deadlines in the task, so they die with it),
//! and carries out what the machine decides: adverts, virtual addresses,
//! gratuitous ARP / unsolicited NA bursts, notify commands. Tracking
//! changes its priority or puts it in fault.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{
    check::{Expect, Rejected},
    fsm::{Action, Event, Fsm, Params, State},
    io::{IoError, Received, VrrpSocket},
    notify,
    packet::{self, Advert, ChecksumMode, Version},
    track::{self, Standing, Tracked},
};
use crate::{
    config::validate::{VrrpConfig, VrrpVersion},
    connsync::Gate,
    control::status::{VrrpState, VrrpStatus},
    net::{addr::Addresses, iface},
    vrrp::{
        lease::Leases,
        link::{NetLink, VrrpLink},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("VRRP instance {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: IoError,
    },
    #[error("VRRP instance {name}: cannot read the addresses of {interface}: {source}")]
    Addresses {
        name: String,
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running instance; dropping it aborts the task, [`Instance::shutdown`]
/// leaves the way RFC 9568 wants (priority 0, addresses removed).
pub struct Instance {
    status: Arc<Mutex<VrrpStatus>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    /// Opens the socket and starts the instance; call within a tokio runtime.
    pub fn start(
        config: VrrpConfig,
        addresses: Addresses,
        tracked: watch::Receiver<Tracked>,
        leases: Option<Leases>,
        gate: Option<Gate>,
    ) -> Result<Self, InstanceError> {
        let v6 = config.virtual_addresses.iter().any(|(a, _)| a.is_ipv6());
        let vips: Vec<IpAddr> = config.virtual_addresses.iter().map(|(a, _)| *a).collect();
        let io_error = |source| InstanceError::Io {
            name: config.name.clone(),
            source,
        };
        let local = iface::primary_address(&config.interface, v6, &vips)
            .map_err(|source| InstanceError::Addresses {
                name: config.name.clone(),
                interface: config.interface.clone(),
                source,
            })?
            .ok_or_else(|| {
                io_error(IoError::NoAddress {
                    interface: config.interface.clone(),
                    family: if v6 { "IPv6 link-local" } else { "IPv4" },
                })
            })?;
        let socket = VrrpSocket::open(&config.interface, v6, local).map_err(io_error)?;
        let link = NetLink {
            socket,
            addresses,
            leases,
        };
        Ok(Self::start_on(config, link, tracked, gate))
    }

    /// Starts the instance on `link` (the real network, or a test's); with
    /// a sync `gate`, it commits synced flows before taking the addresses
    /// and preempts only once the peers' tables are in.
    pub fn start_on(
        config: VrrpConfig,
        link: impl VrrpLink,
        tracked: watch::Receiver<Tracked>,
        gate: Option<Gate>,
    ) -> Self {
        let vips: Vec<IpAddr> = config.virtual_addresses.iter().map(|(a, _)| *a).collect();
        let local = link.local();
        let version = match config.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        };
        let password = config.auth_pass.as_ref().map(|p| {
            let mut bytes = [0u8; 8];
            bytes[..p.len()].copy_from_slice(p.as_bytes());
            bytes
        });
        let expect = Expect {
            version,
            checksum: if config.checksum_as_v2 {
                ChecksumMode::AsV2
            } else {
                ChecksumMode::Rfc
            },
            vrid: config.vrid,
            advert_interval: config.advert_interval,
            password,
            unicast_peers: config.unicast_peers.clone(),
            addresses: vips.clone(),
        };
        let fsm = Fsm::new(Params {
            version,
            priority: config.priority,
            preempt: config.preempt,
            advert_interval: config.advert_interval,
            primary_address: local,
        });
        let status = Arc::new(Mutex::new(VrrpStatus {
            name: config.name.clone(),
            interface: config.interface.clone(),
            vrid: config.vrid,
            version: if version == Version::V2 { 2 } else { 3 },
            state: VrrpState::Initialize,
            priority: config.priority,
            configured_priority: config.priority,
            address: Some(local),
            ..VrrpStatus::default()
        }));
        let (stop_tx, stop_rx) = oneshot::channel();
        let runner = Runner {
            config,
            link,
            expect,
            fsm,
            vips,
            timers: Timers::default(),
            status: status.clone(),
            fault: None,
            shown: VrrpState::Initialize,
            rejected: Rejected::default(),
            tracked,
            send_failing: false,
            sync_ready: gate.as_ref().map(Gate::ready),
            gate,
        };
        Self {
            status,
            stop: Some(stop_tx),
            task: Some(tokio::spawn(runner.run(stop_rx))),
        }
    }

    pub fn status(&self) -> VrrpStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Leaves: a master sends priority 0 (so a backup takes over after its
    /// skew time, not its master-down interval) and removes the addresses.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Timers {
    adver: Option<Instant>,
    master_down: Option<Instant>,
    garp_repeat: Option<Instant>,
    garp_refresh: Option<Instant>,
    /// Preemption stays off until then (keepalived's preempt_delay).
    preempt_from: Option<Instant>,
}

struct Runner<L> {
    config: VrrpConfig,
    link: L,
    expect: Expect,
    fsm: Fsm,
    vips: Vec<IpAddr>,
    timers: Timers,
    status: Arc<Mutex<VrrpStatus>>,
    fault: Option<String>,
    /// The state as last reported (fault is the instance's own).
    shown: VrrpState,
    rejected: Rejected,
    tracked: watch::Receiver<Tracked>,
    /// Logs a failing send once, not once per advert.
    send_failing: bool,
    gate: Option<Gate>,
    /// Whether the peers' flow tables are in (None: no sync).
    sync_ready: Option<watch::Receiver<bool>>,
}

/// Waits until `ready` changes, or forever without sync (or once it is
/// ready: it never goes back).
async fn ready_changed(ready: &mut Option<watch::Receiver<bool>>) {
    match ready {
        Some(r) if !*r.borrow() => {
            if r.changed().await.is_err() {
                // The sync task is gone: nothing to wait for.
                *ready = None;
            }
        }
        _ => std::future::pending().await,
    }
}

/// Waits until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<L: VrrpLink> Runner<L> {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        // A crashed predecessor may have left the addresses: a router starts
        // without them and takes them when it becomes master.
        self.release_addresses().await;
        let standing = track::standing(&self.config, &self.tracked.borrow_and_update());
        self.apply_standing(standing).await;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                received = self.link.recv() => self.on_received(received).await,
                _ = until(self.timers.master_down) => {
                    self.timers.master_down = None;
                    self.event(Event::MasterDownTimerFired).await;
                }
                _ = until(self.timers.adver) => {
                    self.timers.adver = None;
                    self.event(Event::AdverTimerFired).await;
                }
                _ = until(self.timers.garp_repeat) => {
                    self.timers.garp_repeat = None;
                    self.announce(self.config.garp.count);
                }
                _ = until(self.timers.garp_refresh) => {
                    self.timers.garp_refresh = self.config.garp.refresh.map(|r| Instant::now() + r);
                    self.announce(1);
                }
                _ = until(self.timers.preempt_from) => {
                    self.timers.preempt_from = None;
                    self.update_preempt();
                }
                _ = ready_changed(&mut self.sync_ready) => self.update_preempt(),
                Ok(()) = self.tracked.changed() => {
                    let standing = track::standing(&self.config, &self.tracked.borrow_and_update());
                    self.apply_standing(standing).await;
                }
            }
        }
        self.event(Event::Shutdown).await;
        self.release_addresses().await;
        tracing::info!(instance = self.config.name, "VRRP instance stopped");
    }

    async fn on_received(&mut self, received: std::io::Result<Received>) {
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(instance = self.config.name, error = %e, "VRRP receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        if received.src == self.link.local() || self.fault.is_some() {
            return;
        }
        match self.expect.check(&received) {
            Err(reason) => {
                self.rejected.count(reason);
                tracing::debug!(instance = self.config.name, from = %received.src, reason = reason.name(), "VRRP message ignored");
                self.publish();
            }
            Ok(advert) => {
                self.status.lock().expect("status lock").adverts_received += 1;
                self.event(Event::Advert {
                    priority: advert.priority,
                    interval: advert.interval,
                    from: received.src,
                })
                .await;
                if self.fsm.state() == State::Backup && advert.priority != 0 {
                    self.status.lock().expect("status lock").master = Some(received.src);
                }
            }
        }
    }

    /// Tracking changed (or the instance starts): enter or leave fault, or
    /// take the new priority.
    async fn apply_standing(&mut self, standing: Standing) {
        match standing {
            Standing::Fault(reason) => {
                if self.fault.is_none() {
                    tracing::warn!(
                        instance = self.config.name,
                        reason,
                        "VRRP instance in fault"
                    );
                    self.event(Event::Shutdown).await;
                    self.fault = Some(reason);
                    self.report();
                }
            }
            Standing::Priority(priority) => {
                if priority != self.fsm.priority() {
                    tracing::info!(
                        instance = self.config.name,
                        from = self.fsm.priority(),
                        to = priority,
                        "VRRP priority changed by tracking"
                    );
                    self.fsm.set_priority(priority);
                }
                if self.fault.take().is_some() || self.fsm.state() == State::Initialize {
                    if !self.config.preempt_delay.is_zero() {
                        self.timers.preempt_from = Some(Instant::now() + self.config.preempt_delay);
                    }
                    self.update_preempt();
                    self.event(Event::Startup).await;
                }
                self.publish();
            }
        }
    }

    /// Preemption is on as configured, except while a preempt delay runs
    /// or the synced flow tables are not in yet: a node that took over now
    /// would break the flows it has not heard of.
    fn update_preempt(&mut self) {
        let delayed = self.timers.preempt_from.is_some();
        let syncing = self.sync_ready.as_ref().is_some_and(|r| !*r.borrow());
        if self.config.preempt && syncing {
            tracing::info!(
                instance = self.config.name,
                "no preemption until the peers' flow tables are in"
            );
        }
        self.fsm
            .set_preempt(self.config.preempt && !delayed && !syncing);
    }

    /// Feeds `event` to the state machine and carries out its actions.
    async fn event(&mut self, event: Event) {
        let actions = self.fsm.handle(event);
        // The status shows the new state before its actions take effect: a
        // client that already heard the new master's gratuitous ARP must
        // find "master" in `halb status`, never "backup".
        let changed = self.report_state();
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::TakeAddresses => self.take_addresses().await,
                Action::ReleaseAddresses => self.release_addresses().await,
                Action::StartAdverTimer(after) => {
                    self.timers.adver = Some(Instant::now() + after);
                }
                Action::StartMasterDownTimer(after) => {
                    self.timers.master_down = Some(Instant::now() + after);
                }
                Action::StopTimers => {
                    self.timers.adver = None;
                    self.timers.master_down = None;
                }
            }
        }
        // Notify commands run once the addresses are where the state says.
        if let Some(state) = changed {
            self.notify(state);
        }
    }

    /// A master's hold on its addresses lasts as long as a backup waits
    /// for its adverts (RFC 9568 §6.1: three intervals, plus a skew of at
    /// most one more); past that, a backup takes over.
    fn renew_leases(&self) {
        self.link
            .renew_leases(&self.vips, self.config.advert_interval * 3);
    }

    async fn send_advert(&mut self, priority: u8) {
        if self.fsm.state() == State::Master && priority != 0 {
            self.renew_leases();
        }
        let advert = Advert {
            version: self.expect.version,
            vrid: self.config.vrid,
            priority,
            interval: self.config.advert_interval,
            addresses: self.vips.clone(),
            password: self.expect.password,
        };
        let destinations = if self.config.unicast_peers.is_empty() {
            vec![self.link.group()]
        } else {
            self.config.unicast_peers.clone()
        };
        for dst in destinations {
            let message = packet::encode(&advert, self.link.local(), dst, self.expect.checksum);
            match self.link.send(dst, &message).await {
                Ok(()) => {
                    self.send_failing = false;
                    self.status.lock().expect("status lock").adverts_sent += 1;
                }
                Err(e) if !self.send_failing => {
                    self.send_failing = true;
                    tracing::warn!(instance = self.config.name, %dst, error = %e, "cannot send VRRP advert");
                }
                Err(_) => {}
            }
        }
    }

    async fn take_addresses(&mut self) {
        // Flows the peers sent are in the maps before the first packet
        // to the VIP can arrive here.
        if let Some(gate) = &self.gate {
            gate.commit().await;
        }
        self.renew_leases();
        for (addr, prefix) in &self.config.virtual_addresses {
            if let Err(e) = self
                .link
                .add_address(
                    &self.config.interface,
                    *addr,
                    *prefix,
                    self.config.label.as_deref(),
                )
                .await
            {
                tracing::error!(instance = self.config.name, error = %e, "cannot take virtual address");
            }
        }
        self.announce(self.config.garp.count);
        let now = Instant::now();
        self.timers.garp_repeat = (self.config.garp.count > 0
            && !self.config.garp.repeat_after.is_zero())
        .then_some(now + self.config.garp.repeat_after);
        self.timers.garp_refresh = self.config.garp.refresh.map(|r| now + r);
    }

    async fn release_addresses(&mut self) {
        self.timers.garp_repeat = None;
        self.timers.garp_refresh = None;
        self.link.end_leases(&self.vips);
        for (addr, prefix) in &self.config.virtual_addresses {
            if let Err(e) = self
                .link
                .remove_address(&self.config.interface, *addr, *prefix)
                .await
            {
                tracing::error!(instance = self.config.name, error = %e, "cannot remove virtual address");
            }
        }
    }

    /// Sends `rounds` gratuitous ARPs / unsolicited NAs for every address.
    fn announce(&self, rounds: u32) {
        for _ in 0..rounds {
            for addr in &self.vips {
                if let Err(e) = self.link.announce(&self.config.interface, *addr) {
                    tracing::warn!(instance = self.config.name, error = %e, "cannot announce virtual address");
                    return;
                }
            }
        }
    }

    /// Logs and notifies a change of state, then publishes the status.
    fn report(&mut self) {
        if let Some(state) = self.report_state() {
            self.notify(state);
        }
    }

    /// Runs the notify command for `state`, if one is configured.
    fn notify(&self, state: VrrpState) {
        let command = match state {
            VrrpState::Master => self.config.notify_master.as_deref(),
            VrrpState::Backup => self.config.notify_backup.as_deref(),
            VrrpState::Fault => self.config.notify_fault.as_deref(),
            VrrpState::Initialize => None,
        };
        if let Some(command) = command {
            notify::run(command, &self.config.name, state.name());
        }
    }

    /// Logs a change of state and publishes the status; returns the new
    /// state when it changed.
    fn report_state(&mut self) -> Option<VrrpState> {
        let now = match (&self.fault, self.fsm.state()) {
            (Some(_), _) => VrrpState::Fault,
            (None, State::Initialize) => VrrpState::Initialize,
            (None, State::Backup) => VrrpState::Backup,
            (None, State::Master) => VrrpState::Master,
        };
        if now != self.shown {
            let transition = format!("{} -> {}", self.shown.name(), now.name());
            tracing::info!(
                instance = self.config.name,
                transition,
                priority = self.fsm.priority(),
                "VRRP state changed"
            );
            self.shown = now;
            let mut status = self.status.lock().expect("status lock");
            status.transitions += 1;
            status.last_transition = Some(transition);
            status.last_transition_at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
            status.master = (now == VrrpState::Master).then_some(self.link.local());
            drop(status);
            self.publish();
            return Some(now);
        }
        self.publish();
        None
    }

    fn publish(&self) {
        let mut status = self.status.lock().expect("status lock");
        status.state = self.shown;
        status.priority = self.fsm.priority();
        status.fault = self.fault.clone();
        status.rejected = self.rejected.by_name();
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
