//! halb's XDP program: entry points only; each stage lives in its own module.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::info;

/// Runs on every packet received on an interface halb is attached to.
///
/// Today it classifies and counts every packet and hands it to the kernel
/// stack unchanged (XDP_PASS); service lookup and forwarding come next.
#[xdp]
pub fn halb_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let l3 = parse::eth::ethertype(&ctx);
    if stats::count_rx(len, l3) == stats::FirstOnCpu::Yes {
        // Once per CPU, not per packet: proves the datapath (and its log
        // channel) is alive without flooding the ring buffer.
        info!(
            &ctx,
            "datapath active: first packet on cpu {} from ifindex {}",
            stats::cpu(),
            ctx.ingress_ifindex() as u32
        );
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
