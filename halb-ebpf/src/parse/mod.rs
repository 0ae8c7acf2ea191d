//! Bounds-checked packet parsing.

pub mod eth;

use aya_ebpf::programs::XdpContext;

/// Returns a pointer to a `T` at `offset` bytes into the packet, or `None`
/// when the packet is too short to hold it. Every packet read goes through here.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    // verifier: the comparison against data_end must be on the pointer we
    // then dereference, so compute it from `start` and compare it directly.
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}
