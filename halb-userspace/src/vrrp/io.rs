//! VRRP on the wire: a raw IP protocol 112 socket per instance, bound to
//! its interface, joined to the VRRP group (224.0.0.18 or ff02::12), sending
//! with TTL / hop limit 255 to the group or to unicast peers, and receiving
//! with the TTL / hop limit and destination a receiver must check.
//!
//! IPv4 is sent with IP_HDRINCL so the source is the router's primary
//! address, never a virtual address the kernel might prefer; IPv6 sets the
//! link-local source with IPV6_PKTINFO. Checksums are the codec's job (the
//! kernel must not drop bad ones unseen: they are counted).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::unix::AsyncFd;

use super::packet::{IPPROTO_VRRP, REQUIRED_TTL};

/// RFC 9568 §5.1.1.2: the IPv4 multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// RFC 9568 §5.1.2.2: the IPv6 multicast group.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Internetwork control precedence, as routers (and keepalived) mark adverts.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
const IPV4_HEADER_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("{interface} has no {family} address to send VRRP from")]
    NoAddress {
        interface: String,
        family: &'static str,
    },
    #[error("cannot set up the VRRP socket on {interface} ({step}): {source}")]
    Socket {
        interface: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One received VRRP message with what the IP header said about it.
#[derive(Debug, Clone)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

pub struct VrrpSocket {
    fd: AsyncFd<OwnedFd>,
    v6: bool,
    ifindex: u32,
    /// This router's address: the source of its adverts.
    pub local: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket for `v6` or IPv4 on `interface`, sending from
    /// `local` (see `net::iface::primary_address`).
    pub fn open(interface: &str, v6: bool, local: IpAddr) -> Result<Self, IoError> {
        let ifindex = crate::net::addr::interface_index(interface)
            .ok_or_else(|| IoError::NoInterface(interface.to_owned()))?;
        let fail = |step| {
            let source = io::Error::last_os_error();
            move || IoError::Socket {
                interface: interface.to_owned(),
                step,
                source,
            }
        };
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: a plain socket(2) call; the fd is owned at once.
        let raw = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                IPPROTO_VRRP as i32,
            )
        };
        if raw < 0 {
            return Err(fail("socket")());
        }
        // SAFETY: a new fd the kernel just returned.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = interface.as_bytes();
        // SAFETY: name is valid for its length.
        let bound = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                name.len() as u32,
            )
        };
        if bound < 0 {
            return Err(fail("SO_BINDTODEVICE")());
        }
        let set = |level, option, value: i32, step| {
            if setsockopt(&fd, level, option, &value) < 0 {
                Err(fail(step)())
            } else {
                Ok(())
            }
        };
        if v6 {
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_HOPS,
                255,
                "IPV6_MULTICAST_HOPS",
            )?;
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                255,
                "IPV6_UNICAST_HOPS",
            )?;
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_LOOP,
                0,
                "IPV6_MULTICAST_LOOP",
            )?;
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                ifindex as i32,
                "IPV6_MULTICAST_IF",
            )?;
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                1,
                "IPV6_RECVHOPLIMIT",
            )?;
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                1,
                "IPV6_RECVPKTINFO",
            )?;
            let group = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: GROUP_V6.octets(),
                },
                ipv6mr_interface: ifindex,
            };
            if setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &group) < 0 {
                return Err(fail("join ff02::12")());
            }
        } else {
            set(libc::IPPROTO_IP, libc::IP_HDRINCL, 1, "IP_HDRINCL")?;
            set(
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_LOOP,
                0,
                "IP_MULTICAST_LOOP",
            )?;
            let group = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from(GROUP_V4).to_be(),
                },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as i32,
            };
            if setsockopt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &group) < 0 {
                return Err(fail("join 224.0.0.18")());
            }
        }
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as
        // long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| IoError::Socket {
            interface: interface.to_owned(),
            step: "register with tokio",
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            v6,
            ifindex,
            local,
        })
    }

    /// The group adverts go to when no unicast peer is configured.
    pub fn group(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(GROUP_V6)
        } else {
            IpAddr::V4(GROUP_V4)
        }
    }

    /// Sends one VRRP message to `dst`.
    pub async fn send(&self, dst: IpAddr, message: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| match dst {
                IpAddr::V4(dst) => self.send_v4(fd.get_ref(), dst, message),
                IpAddr::V6(dst) => self.send_v6(fd.get_ref(), dst, message),
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for the next VRRP message.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                if self.v6 {
                    recv_v6(fd.get_ref())
                } else {
                    recv_v4(fd.get_ref())
                }
            }) {
                Ok(Ok(Some(received))) => return Ok(received),
                // Not a whole IPv4 header: nothing to count it against.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    fn send_v4(&self, fd: &OwnedFd, dst: Ipv4Addr, message: &[u8]) -> io::Result<()> {
        let IpAddr::V4(src) = self.local else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let total = IPV4_HEADER_LEN + message.len();
        let mut packet = Vec::with_capacity(total);
        packet.extend_from_slice(&[0x45, TOS_INTERNETWORK_CONTROL]);
        packet.extend_from_slice(&(total as u16).to_be_bytes());
        // Identification and checksum are left to the kernel (IP_HDRINCL
        // fills both when zero).
        packet.extend_from_slice(&[0, 0, 0, 0, REQUIRED_TTL, IPPROTO_VRRP, 0, 0]);
        packet.extend_from_slice(&src.octets());
        packet.extend_from_slice(&dst.octets());
        packet.extend_from_slice(message);
        // SAFETY: sockaddr_in is plain old data.
        let mut to: libc::sockaddr_in = unsafe { zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from(dst).to_be();
        // SAFETY: packet and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn send_v6(&self, fd: &OwnedFd, dst: Ipv6Addr, message: &[u8]) -> io::Result<()> {
        let IpAddr::V6(src) = self.local else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: sockaddr_in6 is plain old data.
        let mut to: libc::sockaddr_in6 = unsafe { zeroed() };
        to.sin6_family = libc::AF_INET6 as u16;
        to.sin6_addr.s6_addr = dst.octets();
        to.sin6_scope_id = self.ifindex;
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let mut control = ControlBuffer::default();
        let mut iov = libc::iovec {
            iov_base: message.as_ptr() as *mut _,
            iov_len: message.len(),
        };
        // SAFETY: msghdr is plain old data; every pointer set below is valid
        // for the length given while sendmsg runs.
        let mut header: libc::msghdr = unsafe { zeroed() };
        header.msg_name = (&mut to as *mut libc::sockaddr_in6).cast();
        header.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        header.msg_controllen =
            unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as usize;
        // SAFETY: the control buffer holds one in6_pktinfo message.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
            (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        }
        // SAFETY: header is fully set up above.
        if unsafe { libc::sendmsg(fd.as_raw_fd(), &header, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, option: i32, value: &T) -> i32 {
    // SAFETY: value is valid for size_of::<T>() bytes.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (value as *const T).cast(),
            size_of::<T>() as u32,
        )
    }
}

/// Room for the ancillary data VRRP uses, aligned for cmsghdr.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

impl Default for ControlBuffer {
    fn default() -> Self {
        Self([0; 128])
    }
}

/// Reads one IPv4 packet (raw IPv4 sockets deliver the IP header).
fn recv_v4(fd: &OwnedFd) -> io::Result<Option<Received>> {
    let mut buf = [0u8; 2048];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let packet = &buf[..n as usize];
    if packet.len() < IPV4_HEADER_LEN {
        return Ok(None);
    }
    let header_len = ((packet[0] & 0x0f) as usize) * 4;
    let total = (u16::from_be_bytes([packet[2], packet[3]]) as usize).min(packet.len());
    if header_len < IPV4_HEADER_LEN || total < header_len {
        return Ok(None);
    }
    let at = |i: usize| Ipv4Addr::new(packet[i], packet[i + 1], packet[i + 2], packet[i + 3]);
    Ok(Some(Received {
        src: IpAddr::V4(at(12)),
        dst: IpAddr::V4(at(16)),
        ttl: packet[8],
        payload: packet[header_len..total].to_vec(),
    }))
}

/// Reads one IPv6 VRRP message with its hop limit and destination from
/// ancillary data (raw IPv6 sockets deliver no IP header).
fn recv_v6(fd: &OwnedFd) -> io::Result<Option<Received>> {
    let mut buf = [0u8; 2048];
    let mut control = ControlBuffer::default();
    // SAFETY: sockaddr_in6 is plain old data.
    let mut from: libc::sockaddr_in6 = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; its pointers are valid while
    // recvmsg runs.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    header.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = control.0.len();
    // SAFETY: header is fully set up above.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut header, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = 0u8;
    let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    // SAFETY: walking the control messages recvmsg wrote, by the CMSG macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    ttl = std::ptr::read_unaligned(data.cast::<i32>()).clamp(0, 255) as u8;
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    dst = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Ok(Some(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst,
        ttl,
        payload: buf[..n as usize].to_vec(),
    }))
}
