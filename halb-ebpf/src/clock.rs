//! Time and the life of tracked entries: TCP flows live long until a FIN
//! or RST, then briefly; UDP flows have their own timeout.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use halb_common::{addr::PROTO_TCP, flow::FLOW_CLOSING};

use crate::{
    maps::{HALB_TCP_CLOSING_TIMEOUT_NS, HALB_TCP_TIMEOUT_NS, HALB_UDP_TIMEOUT_NS},
    parse::{
        Packet,
        l4::{TCP_FIN, TCP_RST},
    },
};

/// Entries are refreshed at most this often, so a busy flow does not
/// write its entry (and bounce its cache line) on every packet.
const TOUCH_EVERY_NS: u64 = 1_000_000_000;

/// Monotonic time at tick resolution: ample for timeouts of seconds, and
/// cheaper per packet than the precise clock.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper with no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Whether an entry last seen at `last_seen_ns` in `state` has expired.
#[inline(always)]
pub fn expired(last_seen_ns: u64, state: u8, proto: u8, now: u64) -> bool {
    let timeout = if proto != PROTO_TCP {
        HALB_UDP_TIMEOUT_NS.load()
    } else if state == FLOW_CLOSING {
        HALB_TCP_CLOSING_TIMEOUT_NS.load()
    } else {
        HALB_TCP_TIMEOUT_NS.load()
    };
    now.saturating_sub(last_seen_ns) > timeout
}

/// Refreshes `last_seen_ns` when it is more than a second old; says whether
/// it did (the caller then refreshes what it caches with the same period).
#[inline(always)]
pub fn touch(last_seen_ns: &mut u64, now: u64) -> bool {
    if now.saturating_sub(*last_seen_ns) > TOUCH_EVERY_NS {
        *last_seen_ns = now;
        return true;
    }
    false
}

/// Whether `pkt` ends its TCP connection (FIN or RST).
#[inline(always)]
pub fn closes(pkt: &Packet) -> bool {
    pkt.proto == PROTO_TCP && pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0
}
