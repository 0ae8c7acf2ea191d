//! Layer-2 direct server return: only the destination MAC changes, to the
//! backend's; the packet still says "to the VIP", which the backend holds
//! on its loopback, and the backend answers the client directly.

use aya_ebpf::programs::XdpContext;

use halb_common::flow::FlowKey;

use crate::{
    fib::{self, NextHop},
    parse::{Packet, eth::EthHdr, ptr_at},
    select::{self, Choice},
    verdict::{Direction, Drop, Verdict},
};

#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    choice: &Choice,
) -> Result<Verdict, Verdict> {
    let backend = &choice.backend;
    let hop = if backend.mac != [0; 6] {
        // A configured MAC: the backend is on the segment this came in on,
        // and the frame's destination MAC is this interface's own.
        let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Verdict::Drop(Drop::BadIp))?;
        NextHop {
            ifindex: ctx.ingress_ifindex() as u32,
            dst_mac: backend.mac,
            // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
            src_mac: unsafe { (*eth).dst },
        }
    } else {
        match choice.hop {
            Some(hop) => hop,
            None => {
                // Route to the backend's address: the kernel's neighbour
                // table gives its MAC and the interface it is on.
                let hop = fib::lookup(ctx, pkt.family, &pkt.src, &backend.addr_be, pkt.ip_len)?;
                if !choice.new_flow {
                    select::remember_hop(key, &hop);
                }
                hop
            }
        }
    };
    if choice.new_flow {
        select::track(ctx, pkt, key, choice, 0, &hop)?;
    }
    fib::apply(ctx, &hop).map(|egress| Verdict::Forward(Direction::ToBackend, egress))
}
