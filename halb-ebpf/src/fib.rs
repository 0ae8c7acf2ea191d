//! Next hops from the kernel's routing and neighbour tables
//! (bpf_fib_lookup), and sending the packet there.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use halb_common::addr::{AddrBe, FAMILY_IPV4};

use crate::{
    maps::HALB_SCR_FIB,
    parse::{eth::EthHdr, ptr_at},
    verdict::{Drop, Egress, Verdict},
};

/// Where a packet goes next: the egress interface and the MACs to write.
#[derive(Clone, Copy)]
pub struct NextHop {
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// Looks up the route from `src` to `dst` in the kernel's routing and
/// neighbour tables.
// verifier: its 64-byte argument lives in a per-CPU scratch slot, so
// inlining it adds no stack.
#[inline(always)]
pub fn lookup(
    ctx: &XdpContext,
    family: u8,
    src: &AddrBe,
    dst: &AddrBe,
    ip_len: u16,
) -> Result<NextHop, Verdict> {
    let ingress = ctx.ingress_ifindex() as u32;
    let params = HALB_SCR_FIB
        .get_ptr_mut(0)
        .ok_or(Verdict::Drop(Drop::MapError))?;
    // SAFETY: this CPU's slot of a per-CPU array; XDP does not nest on a
    // CPU, so nothing else uses it until this packet is done.
    let params = unsafe { &mut *params };
    // SAFETY: bpf_fib_lookup is plain old data; zero is valid for every field.
    *params = unsafe { core::mem::zeroed() };
    params.family = family;
    params.ifindex = ingress;
    params.__bindgen_anon_1.tot_len = ip_len;
    if family == FAMILY_IPV4 {
        params.__bindgen_anon_3.ipv4_src = src[0];
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.__bindgen_anon_3.ipv6_src = *src;
        params.__bindgen_anon_4.ipv6_dst = *dst;
    }
    // SAFETY: ctx is this program's context and params a valid, sized struct.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(NextHop {
            ifindex: params.ifindex,
            dst_mac: params.dmac,
            src_mac: params.smac,
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(Verdict::Drop(Drop::NoNeighbour)),
        _ => Err(Verdict::Drop(Drop::NoRoute)),
    }
}

/// Writes the next hop's MACs and picks the way out: XDP_TX when it leaves
/// by the interface it came in on, else a redirect.
#[inline(always)]
pub fn apply(ctx: &XdpContext, hop: &NextHop) -> Result<Egress, Verdict> {
    set_macs(ctx, &hop.dst_mac, &hop.src_mac)?;
    Ok(send(hop.ifindex, ctx.ingress_ifindex() as u32))
}

/// Route lookup and [`apply`] in one, for packets nothing is cached for.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    family: u8,
    src: &AddrBe,
    dst: &AddrBe,
    ip_len: u16,
) -> Result<Egress, Verdict> {
    let hop = lookup(ctx, family, src, dst, ip_len)?;
    apply(ctx, &hop)
}

/// Writes destination and source MAC into the Ethernet header.
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Verdict> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let eth = unsafe { &mut *eth };
    eth.dst = *dst;
    eth.src = *src;
    Ok(())
}

/// Out of `egress`: XDP_TX when it is the ingress interface, else redirect.
#[inline(always)]
pub fn send(egress: u32, ingress: u32) -> Egress {
    if egress == ingress {
        Egress::Tx
    } else {
        // SAFETY: a helper taking plain integers.
        Egress::Redirect(unsafe { bpf_redirect(egress, 0) } as u8)
    }
}
