//! What the program does with a packet, and why: every path ends in one
//! of these, and each reason has its own counter.

use aya_ebpf::bindings::xdp_action;

/// Why a packet goes to the kernel stack untouched.
#[derive(Clone, Copy)]
pub enum Pass {
    NotIp,
    NotService,
    Layer7,
    Ipv6Ext,
    Icmp,
    Fragment,
    OtherHost,
}

/// Why a packet is dropped.
#[derive(Clone, Copy)]
pub enum Drop {
    BadIp,
    BadL4,
    Fragment,
    NoBackend,
    NatPorts,
    NoRoute,
    NoNeighbour,
    MapError,
    LeaseExpired,
    MidFlow,
    UnknownReply,
}

/// Which way a forwarded packet goes.
#[derive(Clone, Copy)]
pub enum Direction {
    /// Client to backend.
    ToBackend,
    /// Backend's reply, back to the client.
    Reply,
    /// An ICMP error about a flow, to its backend.
    IcmpToBackend,
    /// A reset back to the client: no backend up.
    Refused,
}

/// How the packet leaves: back out of the interface it came in on, or
/// redirected to another (with the helper's return value as the action).
#[derive(Clone, Copy)]
pub enum Egress {
    Tx,
    /// bpf_redirect's result: XDP_REDIRECT, or XDP_ABORTED on failure.
    Redirect(u8),
}

#[derive(Clone, Copy)]
pub enum Verdict {
    Pass(Pass),
    Drop(Drop),
    Forward(Direction, Egress),
}

impl Verdict {
    /// The XDP action that carries this verdict out.
    #[inline(always)]
    pub fn action(&self) -> u32 {
        match self {
            Verdict::Pass(_) => xdp_action::XDP_PASS,
            Verdict::Drop(_) => xdp_action::XDP_DROP,
            Verdict::Forward(_, Egress::Tx) => xdp_action::XDP_TX,
            Verdict::Forward(_, Egress::Redirect(action)) => *action as u32,
        }
    }
}
