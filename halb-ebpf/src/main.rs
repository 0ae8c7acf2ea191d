//! halb's XDP program: the entry point and the order of stages; each stage
//! lives in its own module.
//!
//! parse -> (fragment? ICMP?) -> service lookup -> backend choice ->
//! NAT or DSR rewrite -> next hop -> verdict; and for packets that are no
//! service's: a backend's reply to translate back, or the kernel.
#![no_std]
#![no_main]

mod clock;
mod csum;
mod dsr;
mod events;
mod fib;
mod icmp;
mod lease;
mod lookup;
mod maps;
mod nat;
mod parse;
mod reset;
mod rewrite;
mod select;
mod stats;
mod verdict;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use aya_log_ebpf::info;
use halb_common::{
    addr::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
    service::{MODE_DSR, SERVICE_F_LAYER7, SERVICE_F_RESET_WHEN_DOWN},
};
use parse::Packet;
use verdict::{Drop, Pass, Verdict};

#[xdp]
pub fn halb_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let l3 = parse::eth::ethertype(&ctx);
    if stats::count_rx(len, l3) == stats::FirstOnCpu::Yes {
        log_first_packet(&ctx);
    }
    let verdict = process(&ctx, l3, len).unwrap_or_else(|v| v);
    stats::count_verdict(&verdict);
    verdict.action()
}

// verifier: the stack of a call chain may not exceed 512 bytes, so this
// entry stage stays small and each path below is a function of its own
// (their frames are siblings, not added up).
#[inline(always)]
fn process(ctx: &XdpContext, l3: parse::eth::L3, len: u64) -> Result<Verdict, Verdict> {
    if !parse::eth::addressed_here(ctx) {
        return Err(Verdict::Pass(Pass::OtherHost));
    }
    if l3 == parse::eth::L3::Arp {
        return lease::arp(ctx);
    }
    let pkt = parse::packet(ctx, l3)?;
    if pkt.fragment != 0 {
        // Services need whole packets; other fragments are the kernel's.
        return Err(if lookup::is_vip(pkt) {
            Verdict::Drop(Drop::Fragment)
        } else {
            Verdict::Pass(Pass::Fragment)
        });
    }
    match pkt.proto {
        // Not a service's: maybe a backend's reply. The two paths are
        // called one after the other, never one from the other (stack).
        PROTO_TCP | PROTO_UDP => match to_service(ctx, pkt, len) {
            Err(Verdict::Pass(Pass::NotService)) => reply(ctx, pkt),
            Err(verdict) => Err(verdict),
            Ok(Served { verdict, event }) => {
                if event != 0 {
                    events::report(pkt, event);
                }
                Ok(verdict)
            }
        },
        PROTO_ICMPV6 => match lease::solicitation(ctx, pkt) {
            Some(refused) => Err(refused),
            None => icmp::to_backend(ctx, pkt),
        },
        PROTO_ICMP => icmp::to_backend(ctx, pkt),
        _ => Err(Verdict::Pass(Pass::NotService)),
    }
}

/// A service's packet on its way, and the flow event it brought about.
struct Served {
    verdict: Verdict,
    event: u8,
}

/// TCP or UDP to a service: pick a backend and forward.
#[inline(never)]
fn to_service(ctx: &XdpContext, pkt: &Packet, len: u64) -> Result<Served, Verdict> {
    let svc = lookup::service(pkt).ok_or(Verdict::Pass(Pass::NotService))?;
    if svc.flags & SERVICE_F_LAYER7 != 0 {
        return Err(Verdict::Pass(Pass::Layer7));
    }
    let key = lookup::flow_key(pkt);
    let choice = match select::backend(ctx, pkt, &key, &svc) {
        Err(Verdict::Drop(Drop::NoBackend)) if svc.flags & SERVICE_F_RESET_WHEN_DOWN != 0 => {
            return reset::refuse(ctx, pkt).map(|verdict| Served { verdict, event: 0 });
        }
        choice => choice?,
    };
    let verdict = if svc.mode == MODE_DSR {
        dsr::forward(ctx, pkt, &key, &choice)?
    } else {
        nat::forward(ctx, pkt, &key, &svc, &choice)?
    };
    // Counted once it is sure to leave: a packet dropped for want of a
    // route, a neighbour or a NAT port was not served, nor a new flow.
    if verdict.action() != aya_ebpf::bindings::xdp_action::XDP_ABORTED {
        stats::count_traffic(svc.id, choice.backend_id, len, choice.new_flow);
    }
    Ok(Served {
        verdict,
        event: choice.event,
    })
}

/// Not a service's packet: a backend's reply to a NAT flow, or the kernel's.
// verifier: kept apart from to_service, so their frames do not add up.
#[inline(never)]
fn reply(ctx: &XdpContext, pkt: &Packet) -> Result<Verdict, Verdict> {
    match lookup::nat_reply(pkt) {
        Some(entry) => nat::reply(ctx, pkt, &entry),
        None if nat::awaited(pkt) => Err(Verdict::Drop(Drop::UnknownReply)),
        None => Err(Verdict::Pass(Pass::NotService)),
    }
}

/// Once per CPU, not per packet: shows the datapath (and its log channel)
/// is alive without flooding the ring buffer.
// verifier: kept out of line; inlined, the log macro's size-class loop was
// laid out as the program's last instructions without an exit (LLVM 22).
#[inline(never)]
fn log_first_packet(ctx: &XdpContext) {
    info!(
        ctx,
        "datapath active: first packet on cpu {} from ifindex {}",
        stats::cpu(),
        ctx.ingress_ifindex() as u32
    );
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
