//! Virtual addresses on an interface, through rtnetlink: added when a VRRP
//! instance becomes master (with an optional label, like keepalived's
//! `label eth0:10`), removed when it leaves.

use std::net::IpAddr;

use rtnetlink::{
    Handle,
    packet_route::address::{AddressAttribute, AddressFlags},
};

#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("cannot add {addr}/{prefix} to {interface}: {source}")]
    Add {
        addr: IpAddr,
        prefix: u8,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot remove {addr} from {interface}: {source}")]
    Remove {
        addr: IpAddr,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

#[derive(Clone)]
pub struct Addresses {
    handle: Handle,
}

impl Addresses {
    /// Opens the netlink connection; call within a tokio runtime.
    pub fn connect() -> Result<Self, AddrError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(AddrError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Adds `addr/prefix` to `interface` (a no-op when it is there), with
    /// `label` (which must start with the interface's name, as the kernel
    /// requires).
    pub async fn add(
        &self,
        interface: &str,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), AddrError> {
        let index = ifindex(interface)?;
        let mut request = self.handle.address().add(index, addr, prefix).replace();
        match (label, addr) {
            (Some(label), IpAddr::V4(_)) => request
                .message_mut()
                .attributes
                .push(AddressAttribute::Label(label.to_owned())),
            // IPv6 addresses carry no label. A virtual address moves between
            // routers: no duplicate address detection (it would hold the
            // address tentative, and unannounced, for a second or more).
            (_, IpAddr::V6(_)) => request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad)),
            (None, IpAddr::V4(_)) => {}
        }
        request.execute().await.map_err(|source| AddrError::Add {
            addr,
            prefix,
            interface: interface.to_owned(),
            source,
        })
    }

    /// Removes `addr/prefix` from `interface`; absent is fine.
    ///
    /// The request names the address itself rather than deleting what a
    /// dump found: a dump races other changes to the same interface (two
    /// instances releasing at once) and can come back interrupted, empty.
    pub async fn remove(&self, interface: &str, addr: IpAddr, prefix: u8) -> Result<(), AddrError> {
        let index = ifindex(interface)?;
        let message = self
            .handle
            .address()
            .add(index, addr, prefix)
            .message_mut()
            .clone();
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            // EADDRNOTAVAIL: it was not there.
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENOENT =>
            {
                Ok(())
            }
            Err(source) => Err(AddrError::Remove {
                addr,
                interface: interface.to_owned(),
                source,
            }),
        }
    }
}

/// The index of `interface` in this thread's network namespace.
fn ifindex(interface: &str) -> Result<u32, AddrError> {
    interface_index(interface).ok_or_else(|| AddrError::NoInterface(interface.to_owned()))
}

/// The index of `interface` in this thread's network namespace, if any.
pub fn interface_index(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => None,
        index => Some(index),
    }
}
