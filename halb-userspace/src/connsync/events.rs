//! The datapath's flow events, read from its ring buffer as they come
//! (the ring's fd wakes the task; nothing polls the flow map).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use halb_common::{
    event::{
        FLOW_EVENT_CLOSING, FLOW_EVENT_NEW, FLOW_EVENT_REFRESH, FLOW_MODE_DSR, FLOW_MODE_FULL_NAT,
        FLOW_MODE_KEEP_CLIENT, FlowEvent,
    },
    flow::FLOW_CLOSING,
};
use tokio::io::unix::AsyncFd;

use super::wire::{FlowMode, FlowRecord, RecordKind};
use crate::dataplane::{clock, maps::ip_from_be};

/// Events read per wake-up at most, so that the socket is not starved.
const MAX_PER_READ: usize = 4096;

pub struct FlowEvents(AsyncFd<RingBuf<MapData>>);

impl FlowEvents {
    pub fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the ring owns its fd, which stays open and unchanged
        // until the ring (moved into the AsyncFd) is dropped.
        Ok(Self(unsafe {
            AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
        }?))
    }

    /// Waits for events, then returns those queued (with when each
    /// happened, on `Instant`'s clock).
    pub async fn next(&mut self) -> std::io::Result<Vec<(FlowRecord, Instant)>> {
        loop {
            let mut guard = self.0.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let mut out = Vec::new();
            let now = Instant::now();
            let now_ns = clock::monotonic_ns();
            while out.len() < MAX_PER_READ {
                let Some(item) = ring.next() else { break };
                if item.len() < size_of::<FlowEvent>() {
                    continue;
                }
                // SAFETY: the ring holds FlowEvents written by the program;
                // read unaligned, as the ring promises only 8-byte alignment.
                let event: FlowEvent =
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
                drop(item);
                if let Some(record) = record(&event, now_ns) {
                    let ago = Duration::from_nanos(now_ns.saturating_sub(event.time_ns));
                    out.push((record, now.checked_sub(ago).unwrap_or(now)));
                }
            }
            if out.len() < MAX_PER_READ {
                guard.clear_ready();
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// A datapath event as a record for peers; None for one this agent does
/// not know (a newer program's).
pub fn record(event: &FlowEvent, now_ns: u64) -> Option<FlowRecord> {
    let kind = match event.kind {
        FLOW_EVENT_NEW => RecordKind::New,
        FLOW_EVENT_REFRESH => RecordKind::Refresh,
        FLOW_EVENT_CLOSING => RecordKind::Closing,
        _ => return None,
    };
    let key = &event.key;
    let backend_ip = ip_from_be(&event.backend_be, event.backend_family);
    let mode = match event.mode {
        FLOW_MODE_FULL_NAT => FlowMode::FullNat {
            snat: SocketAddr::new(
                ip_from_be(&event.snat_be, event.backend_family),
                u16::from_be(event.nat_port_be),
            ),
        },
        FLOW_MODE_KEEP_CLIENT => FlowMode::KeepClient,
        FLOW_MODE_DSR => FlowMode::Dsr,
        _ => return None,
    };
    Some(FlowRecord {
        kind,
        mode,
        closing: event.state == FLOW_CLOSING,
        proto: key.proto,
        client: SocketAddr::new(
            ip_from_be(&key.src_be, key.family),
            u16::from_be(key.sport_be),
        ),
        vip: SocketAddr::new(
            ip_from_be(&key.dst_be, key.family),
            u16::from_be(key.dport_be),
        ),
        backend: SocketAddr::new(backend_ip, u16::from_be(event.backend_port_be)),
        client_mac: event.client_mac,
        age_ms: (now_ns.saturating_sub(event.time_ns) / 1_000_000).min(u32::MAX as u64) as u32,
    })
}
