//! What an interface is right now, in this thread's network namespace:
//! whether it can carry traffic, and its addresses. Both come from calls
//! that follow the namespace (ioctl on a socket, getifaddrs over netlink),
//! never from /sys, which shows the namespace that mounted it.

use std::{
    ffi::{CStr, CString},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Whether `interface` is administratively up and has carrier
/// (IFF_UP and IFF_RUNNING); `None` when there is no such interface.
pub fn is_running(interface: &str) -> Option<bool> {
    let request = ioctl(interface, libc::SIOCGIFFLAGS).ok()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags } as i32;
    Some(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// The MAC of `interface` (SIOCGIFHWADDR), in this thread's namespace.
pub fn mac(interface: &str) -> io::Result<[u8; 6]> {
    let request = ioctl(interface, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the hardware address member.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// Runs the interface ioctl `request` (one that reads `ifr_name` and fills
/// the union) for `interface` on a throwaway socket, which follows this
/// thread's namespace; returns the filled `ifreq`.
fn ioctl(interface: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // SAFETY: a plain socket(2) call; the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel just returned.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data.
    let mut ifreq: libc::ifreq = unsafe { std::mem::zeroed() };
    if interface.len() >= ifreq.ifr_name.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    for (dst, src) in ifreq.ifr_name.iter_mut().zip(interface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: a valid ifreq for an interface ioctl on an open socket.
    if unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ifreq)
}

/// The addresses on `interface`, in the order the kernel lists them.
pub fn addresses(interface: &str) -> io::Result<Vec<IpAddr>> {
    let wanted = CString::new(interface).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entries of the list getifaddrs returned, until freed.
        let e = unsafe { &*entry };
        entry = e.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string.
        if e.ifa_addr.is_null() || unsafe { CStr::from_ptr(e.ifa_name) } != wanted.as_c_str() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it names.
        match i32::from(unsafe { (*e.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*(e.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(e.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

/// The address a router uses as its own on `interface` for `v6` or IPv4:
/// its IPv6 link-local address (RFC 9568 §5.1.2.1), or its first IPv4
/// address that is not in `virtual_addresses`.
pub fn primary_address(
    interface: &str,
    v6: bool,
    virtual_addresses: &[IpAddr],
) -> io::Result<Option<IpAddr>> {
    Ok(addresses(interface)?.into_iter().find(|a| match a {
        IpAddr::V6(v6addr) if v6 => v6addr.is_unicast_link_local(),
        IpAddr::V4(_) if !v6 => !virtual_addresses.contains(a),
        _ => false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_running_and_has_its_address() {
        assert_eq!(is_running("lo"), Some(true));
        assert_eq!(is_running("no-such-if0"), None);
        assert_eq!(
            primary_address("lo", false, &[]).unwrap(),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            primary_address("lo", false, &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap(),
            None
        );
    }
}
