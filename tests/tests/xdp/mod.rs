//! BPF_PROG_TEST_RUN fixtures: the harness, frame builders, and the cases.

pub mod harness;
pub mod pkt;

mod cases_counting;
mod cases_flows;
mod cases_forward;
mod cases_icmp;
mod cases_malformed;

use std::net::IpAddr;

use halb::dataplane::maps::addr_be;
use halb_common::flow::{Flow, FlowKey};

/// The flow key the datapath tracks for `src` -> `dst`.
pub fn flow_key(src: (IpAddr, u16), dst: (IpAddr, u16), proto: u8) -> FlowKey {
    let (src_be, family) = addr_be(src.0);
    FlowKey {
        src_be,
        dst_be: addr_be(dst.0).0,
        sport_be: src.1.to_be(),
        dport_be: dst.1.to_be(),
        proto,
        family,
        _pad: [0; 2],
    }
}

impl harness::Fixture {
    /// The tracked flow `src` -> `dst`; panics when there is none.
    #[track_caller]
    pub fn flow(&self, src: (IpAddr, u16), dst: (IpAddr, u16), proto: u8) -> Flow {
        self.dp
            .maps
            .flows
            .get(&flow_key(src, dst, proto), 0)
            .unwrap_or_else(|e| panic!("no flow {src:?} -> {dst:?}: {e}"))
    }
}
