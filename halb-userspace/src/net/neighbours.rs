//! The XDP program takes next-hop MACs from the kernel's neighbour table,
//! but the kernel never sends to a backend itself, so it would never
//! resolve one. For each backend the agent asks the kernel for the route
//! (RTM_GETROUTE), then adds a "managed" neighbour entry for its next hop
//! (NTF_EXT_MANAGED, Linux 5.16): the kernel resolves it and keeps it
//! resolved on its own.

use std::{collections::BTreeSet, net::IpAddr};

use futures_util::TryStreamExt;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        neighbour::{NeighbourAttribute, NeighbourExtFlags, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("no route to backend {addr}: {source}")]
    Route {
        addr: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("the route to backend {addr} has no output interface")]
    NoInterface { addr: IpAddr },
    #[error("cannot add a managed neighbour entry for {next_hop}: {source}")]
    Add {
        next_hop: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
}

/// A next hop the agent made managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NextHop {
    pub ifindex: u32,
    pub addr: IpAddr,
}

/// Talks to the kernel's routing and neighbour tables.
pub struct Neighbours {
    handle: Handle,
    managed: BTreeSet<NextHop>,
}

impl Neighbours {
    /// Opens the netlink connection; call within a tokio runtime.
    pub fn connect() -> Result<Self, NeighbourError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(NeighbourError::Connect)?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            managed: BTreeSet::new(),
        })
    }

    /// Makes sure the kernel keeps the next hop of every backend resolved.
    /// A backend without a route (or whose entry cannot be added) does not
    /// stop the others: it is returned, with why, to be tried again later.
    pub async fn keep_resolved(
        &mut self,
        backends: impl IntoIterator<Item = IpAddr>,
    ) -> Vec<(IpAddr, NeighbourError)> {
        let backends: BTreeSet<IpAddr> = backends.into_iter().collect();
        let mut unresolved = Vec::new();
        for addr in backends {
            if let Err(e) = self.keep_one_resolved(addr).await {
                unresolved.push((addr, e));
            }
        }
        unresolved
    }

    async fn keep_one_resolved(&mut self, addr: IpAddr) -> Result<(), NeighbourError> {
        let hop = self.next_hop(addr).await?;
        if self.managed.contains(&hop) {
            return Ok(());
        }
        let mut request = self
            .handle
            .neighbours()
            .add(hop.ifindex, hop.addr)
            .replace();
        let message = request.message_mut();
        message.header.state = NeighbourState::None;
        message
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        request
            .execute()
            .await
            .map_err(|source| NeighbourError::Add {
                next_hop: hop.addr,
                source,
            })?;
        tracing::info!(backend = %addr, next_hop = %hop.addr, ifindex = hop.ifindex, "neighbour kept resolved");
        self.managed.insert(hop);
        Ok(())
    }

    /// Where the kernel would send a packet for `addr`: interface and the
    /// gateway, or `addr` itself when it is on-link.
    async fn next_hop(&self, addr: IpAddr) -> Result<NextHop, NeighbourError> {
        let message: RouteMessage = match addr {
            IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let route = self
            .handle
            .route()
            .get(message)
            .execute()
            .try_next()
            .await
            .map_err(|source| NeighbourError::Route { addr, source })?
            .ok_or(NeighbourError::NoInterface { addr })?;
        let mut ifindex = None;
        let mut gateway = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(index) => ifindex = Some(*index),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
                _ => {}
            }
        }
        Ok(NextHop {
            ifindex: ifindex.ok_or(NeighbourError::NoInterface { addr })?,
            addr: gateway.unwrap_or(addr),
        })
    }

    /// Removes the managed entries this agent added (the kernel relearns
    /// any it needs).
    pub async fn release(&mut self) {
        for hop in std::mem::take(&mut self.managed) {
            let mut get = self.handle.neighbours().get().execute();
            while let Ok(Some(neighbour)) = get.try_next().await {
                let matches = neighbour.header.ifindex == hop.ifindex
                    && neighbour.attributes.iter().any(|a| {
                        matches!(a, NeighbourAttribute::Destination(d) if ip_of(d) == Some(hop.addr))
                    });
                if matches {
                    let _ = self.handle.neighbours().del(neighbour).execute().await;
                    break;
                }
            }
        }
    }
}

fn ip_of(d: &rtnetlink::packet_route::neighbour::NeighbourAddress) -> Option<IpAddr> {
    use rtnetlink::packet_route::neighbour::NeighbourAddress;
    match d {
        NeighbourAddress::Inet(a) => Some(IpAddr::V4(*a)),
        NeighbourAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}
