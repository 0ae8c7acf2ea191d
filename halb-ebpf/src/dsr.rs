//! Layer-2 direct server return: only the destination MAC changes, to the
//! backend's; the packet still says "to the VIP", which the backend holds
//! on its loopback, and the backend answers the client directly.

use aya_ebpf::programs::XdpContext;

use crate::{
    fib,
    parse::{Packet, eth::EthHdr, ptr_at},
    select::Choice,
    verdict::{Direction, Drop, Verdict},
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet, choice: &Choice) -> Result<Verdict, Verdict> {
    let backend = &choice.backend;
    if backend.mac == [0; 6] {
        // Route to the backend's address: the kernel's neighbour table
        // gives its MAC and the interface it is on.
        return fib::forward(ctx, pkt.family, &pkt.src, &backend.addr_be, pkt.ip_len)
            .map(|egress| Verdict::Forward(Direction::ToBackend, egress));
    }
    // A configured MAC: the backend is on the segment this came in on, and
    // the frame's destination MAC is this interface's own.
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let own = unsafe { (*eth).dst };
    fib::set_macs(ctx, &backend.mac, &own)?;
    let ingress = ctx.ingress_ifindex() as u32;
    Ok(Verdict::Forward(
        Direction::ToBackend,
        fib::send(ingress, ingress),
    ))
}
