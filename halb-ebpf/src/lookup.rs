//! Is this packet ours? Services by (VIP, port, protocol), VIPs alone for
//! packets without ports, and NAT entries for backends' replies.

use halb_common::{
    flow::{FLOW_CLOSING, FlowKey, NatEntry},
    service::{Service, ServiceKey, Vip, VipKey},
};

use crate::{
    clock,
    maps::{HALB_FLOWS, HALB_NAT, HALB_SERVICES, HALB_VIPS},
    parse::Packet,
};

#[inline(always)]
pub fn service(pkt: &Packet) -> Option<Service> {
    let key = ServiceKey {
        addr_be: pkt.dst,
        port_be: pkt.dport_be,
        proto: pkt.proto,
        family: pkt.family,
    };
    // SAFETY: the value is copied out at once; hash map values may be
    // replaced by userspace, never freed under a running program (RCU).
    unsafe { HALB_SERVICES.get(key).copied() }
}

/// Whether some service listens on `pkt`'s destination address.
#[inline(always)]
pub fn is_vip(pkt: &Packet) -> bool {
    destination(pkt).is_some_and(|vip| vip.services != 0)
}

/// Whether `pkt`'s destination is some full-NAT service's source address.
#[inline(always)]
pub fn is_snat(pkt: &Packet) -> bool {
    destination(pkt).is_some_and(|vip| vip.snat_services != 0)
}

/// What the services make of `pkt`'s destination address.
#[inline(always)]
fn destination(pkt: &Packet) -> Option<Vip> {
    let key = VipKey {
        addr_be: pkt.dst,
        family: pkt.family,
        _pad: [0; 3],
    };
    // SAFETY: the value is copied out at once.
    unsafe { HALB_VIPS.get(key).copied() }
}

/// The 5-tuple of `pkt` as a flow key.
#[inline(always)]
pub fn flow_key(pkt: &Packet) -> FlowKey {
    FlowKey {
        src_be: pkt.src,
        dst_be: pkt.dst,
        sport_be: pkt.sport_be,
        dport_be: pkt.dport_be,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// The NAT entry a backend's reply matches, if it is live; refreshes it.
#[inline(always)]
pub fn nat_reply(pkt: &Packet) -> Option<NatEntry> {
    let entry = HALB_NAT.get_ptr_mut(flow_key(pkt))?;
    // SAFETY: a pointer from a successful lookup; concurrent writers only
    // store whole fields, and the value is copied out before use.
    let entry = unsafe { &mut *entry };
    let now = clock::now();
    if clock::expired(entry.last_seen_ns, entry.state, pkt.proto, now) {
        return None;
    }
    clock::touch(&mut entry.last_seen_ns, now);
    if clock::closes(pkt) {
        entry.state = FLOW_CLOSING;
        // The flow closes too, whichever side ended it: its entries then
        // expire together, and a SYN reusing the tuple starts afresh.
        let flow = FlowKey {
            src_be: entry.client_be,
            dst_be: entry.vip_be,
            sport_be: entry.client_port_be,
            dport_be: entry.vip_port_be,
            proto: pkt.proto,
            family: pkt.family,
            _pad: [0; 2],
        };
        if let Some(flow) = HALB_FLOWS.get_ptr_mut(flow) {
            // SAFETY: a pointer from a successful lookup; one byte stored.
            unsafe { (*flow).state = FLOW_CLOSING };
        }
    }
    Some(*entry)
}
