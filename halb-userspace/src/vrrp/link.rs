//! The seam under a VRRP instance: everything it does to the network, as
//! a trait. The agent's implementation is the raw socket, rtnetlink, the
//! GARP/NA sender and the datapath's leases ([`NetLink`]); the instance's
//! unit tests drive it through [`fake::FakeLink`] on tokio's paused clock,
//! so elections run in milliseconds without root.

use std::{future::Future, io, net::IpAddr, time::Duration};

use super::{
    io::{Received, VrrpSocket},
    lease::Leases,
};
use crate::net::{addr::Addresses, garp};

/// What an instance sends, receives and changes.
pub trait VrrpLink: Send + Sync + 'static {
    /// This router's own address on the link (its adverts' source).
    fn local(&self) -> IpAddr;
    /// Where multicast adverts go.
    fn group(&self) -> IpAddr;
    fn send(&self, dst: IpAddr, message: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// The next message (cancel-safe: a `select!` may drop it).
    fn recv(&self) -> impl Future<Output = io::Result<Received>> + Send;
    fn add_address(
        &self,
        interface: &str,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn remove_address(
        &self,
        interface: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// One gratuitous ARP or unsolicited NA round for `addr`.
    fn announce(&self, interface: &str, addr: IpAddr) -> Result<(), String>;
    /// Holds `addresses` in the datapath for `duration` (see lease.rs).
    fn renew_leases(&self, addresses: &[IpAddr], duration: Duration);
    fn end_leases(&self, addresses: &[IpAddr]);
}

/// The real network: a raw VRRP socket, rtnetlink and AF_PACKET.
pub struct NetLink {
    pub socket: VrrpSocket,
    pub addresses: Addresses,
    pub leases: Option<Leases>,
}

impl VrrpLink for NetLink {
    fn local(&self) -> IpAddr {
        self.socket.local
    }

    fn group(&self) -> IpAddr {
        self.socket.group()
    }

    fn send(&self, dst: IpAddr, message: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        self.socket.send(dst, message)
    }

    fn recv(&self) -> impl Future<Output = io::Result<Received>> + Send {
        self.socket.recv()
    }

    async fn add_address(
        &self,
        interface: &str,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), String> {
        self.addresses
            .add(interface, addr, prefix, label)
            .await
            .map_err(|e| e.to_string())
    }

    async fn remove_address(
        &self,
        interface: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), String> {
        self.addresses
            .remove(interface, addr, prefix)
            .await
            .map_err(|e| e.to_string())
    }

    fn announce(&self, interface: &str, addr: IpAddr) -> Result<(), String> {
        garp::announce(interface, addr).map_err(|e| e.to_string())
    }

    fn renew_leases(&self, addresses: &[IpAddr], duration: Duration) {
        if let Some(leases) = &self.leases {
            leases.renew(addresses, duration);
        }
    }

    fn end_leases(&self, addresses: &[IpAddr]) {
        if let Some(leases) = &self.leases {
            leases.end(addresses);
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A link in memory: what the instance sent and did is recorded, with
    //! the (paused) time it happened; messages are fed in by the test.

    use std::sync::{Arc, Mutex};

    use tokio::{sync::mpsc, time::Instant};

    use super::*;

    /// What the instance did, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Did {
        Sent { dst: IpAddr, message: Vec<u8> },
        Added(IpAddr),
        Removed(IpAddr),
        Announced(IpAddr),
        Renewed(Vec<IpAddr>),
        Ended(Vec<IpAddr>),
    }

    /// What the instance did, with when; shared with the test.
    pub type Log = Arc<Mutex<Vec<(Instant, Did)>>>;

    pub struct FakeLink {
        pub local: IpAddr,
        pub group: IpAddr,
        inbound: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
        log: Log,
    }

    impl FakeLink {
        /// A link for `local`, the sender that feeds it messages, and the
        /// log of what the instance did.
        pub fn new(local: IpAddr, group: IpAddr) -> (Self, mpsc::UnboundedSender<Received>, Log) {
            let (tx, rx) = mpsc::unbounded_channel();
            let log = Log::default();
            let link = Self {
                local,
                group,
                inbound: tokio::sync::Mutex::new(rx),
                log: log.clone(),
            };
            (link, tx, log)
        }

        fn did(&self, what: Did) {
            self.log.lock().unwrap().push((Instant::now(), what));
        }
    }

    impl VrrpLink for FakeLink {
        fn local(&self) -> IpAddr {
            self.local
        }
        fn group(&self) -> IpAddr {
            self.group
        }
        async fn send(&self, dst: IpAddr, message: &[u8]) -> io::Result<()> {
            self.did(Did::Sent {
                dst,
                message: message.to_vec(),
            });
            Ok(())
        }
        async fn recv(&self) -> io::Result<Received> {
            match self.inbound.lock().await.recv().await {
                Some(received) => Ok(received),
                None => std::future::pending().await,
            }
        }
        async fn add_address(
            &self,
            _interface: &str,
            addr: IpAddr,
            _prefix: u8,
            _label: Option<&str>,
        ) -> Result<(), String> {
            self.did(Did::Added(addr));
            Ok(())
        }
        async fn remove_address(
            &self,
            _interface: &str,
            addr: IpAddr,
            _prefix: u8,
        ) -> Result<(), String> {
            self.did(Did::Removed(addr));
            Ok(())
        }
        fn announce(&self, _interface: &str, addr: IpAddr) -> Result<(), String> {
            self.did(Did::Announced(addr));
            Ok(())
        }
        fn renew_leases(&self, addresses: &[IpAddr], _duration: Duration) {
            self.did(Did::Renewed(addresses.to_vec()));
        }
        fn end_leases(&self, addresses: &[IpAddr]) {
            self.did(Did::Ended(addresses.to_vec()));
        }
    }
}
