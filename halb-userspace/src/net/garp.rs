//! Announcing a virtual address after taking it over: gratuitous ARP, in
//! both the request and the reply form (some routers heed only one), and
//! for IPv6 an unsolicited neighbour advertisement with the Override flag
//! (RFC 4861 §7.2.6). Frames are built with etherparse and sent on an
//! AF_PACKET socket bound to the interface.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use etherparse::{ArpEthIpv4Packet, ArpOperation, Icmpv6Type, PacketBuilder};

#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("cannot announce {addr} on {interface}: {source}")]
    Send {
        addr: IpAddr,
        interface: String,
        #[source]
        source: io::Error,
    },
}

const ETH_P_ALL: u16 = 0x0003;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes, and its Ethernet multicast address.
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The frames that announce `addr` from `mac`.
pub fn frames(addr: IpAddr, mac: [u8; 6]) -> Vec<Vec<u8>> {
    match addr {
        IpAddr::V4(v4) => [ArpOperation::REQUEST, ArpOperation::REPLY]
            .into_iter()
            .map(|operation| {
                let mut frame = Vec::new();
                PacketBuilder::ethernet2(mac, BROADCAST)
                    .arp(
                        ArpEthIpv4Packet {
                            operation,
                            sender_mac: mac,
                            sender_ipv4: v4.octets(),
                            // Gratuitous: the sender asks for (tells about) itself.
                            target_mac: if operation == ArpOperation::REPLY {
                                BROADCAST
                            } else {
                                [0; 6]
                            },
                            target_ipv4: v4.octets(),
                        }
                        .into(),
                    )
                    .write(&mut frame)
                    .expect("an ARP frame always builds");
                frame
            })
            .collect(),
        IpAddr::V6(v6) => {
            // Override flag set; router and solicited clear. Then the target
            // address and a Target Link-Layer Address option (type 2).
            let mut body = Vec::with_capacity(24);
            body.extend_from_slice(&v6.octets());
            body.extend_from_slice(&[2, 1]);
            body.extend_from_slice(&mac);
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(mac, ALL_NODES_MAC)
                .ipv6(v6.octets(), ALL_NODES, 255)
                .icmpv6(Icmpv6Type::Unknown {
                    type_u8: 136,
                    code_u8: 0,
                    bytes5to8: [0x20, 0, 0, 0],
                })
                .write(&mut frame, &body)
                .expect("an NA frame always builds");
            vec![frame]
        }
    }
}

/// Sends the announcements of `addr` on `interface` once.
pub fn announce(interface: &str, addr: IpAddr) -> Result<(), GarpError> {
    let send_error = |source| GarpError::Send {
        addr,
        interface: interface.to_owned(),
        source,
    };
    let index = crate::net::addr::interface_index(interface)
        .ok_or_else(|| GarpError::NoInterface(interface.to_owned()))?;
    // SAFETY: a plain socket(2) call; the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, ETH_P_ALL.to_be() as i32) };
    if raw < 0 {
        return Err(send_error(io::Error::last_os_error()));
    }
    // SAFETY: a new fd the kernel just returned.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mac = crate::net::iface::mac(interface).map_err(send_error)?;
    for frame in frames(addr, mac) {
        // SAFETY: sockaddr_ll is plain old data.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(send_error(io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_in_both_forms_and_an_overriding_na() {
        let mac = [2, 0, 0, 0, 0, 2];
        let arp = frames("198.18.0.100".parse().unwrap(), mac);
        assert_eq!(arp.len(), 2);
        for (frame, op) in arp.iter().zip([1u8, 2]) {
            assert_eq!(&frame[..6], &BROADCAST);
            assert_eq!(&frame[12..14], &[0x08, 0x06]);
            assert_eq!(frame[21], op, "ARP operation");
            assert_eq!(&frame[28..32], &[198, 18, 0, 100], "sender address");
            assert_eq!(&frame[38..42], &[198, 18, 0, 100], "target address");
        }
        let na = frames("2001:db8::100".parse().unwrap(), mac);
        let frame = &na[0];
        assert_eq!(&frame[..6], &ALL_NODES_MAC);
        assert_eq!(frame[14 + 7], 255, "hop limit");
        assert_eq!(frame[54], 136, "neighbour advertisement");
        assert_eq!(frame[58], 0x20, "override flag");
    }
}
