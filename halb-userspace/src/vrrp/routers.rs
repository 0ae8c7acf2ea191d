//! Every configured VRRP instance, with what they track: the agent tells
//! it which services lost their last backend, and it watches the tracked
//! interfaces itself.

use std::collections::BTreeSet;

use tokio::sync::watch;

use super::{
    instance::{Instance, InstanceError},
    track::{self, Tracked},
};
use crate::{
    config::validate::VrrpConfig,
    control::status::VrrpStatus,
    net::addr::{AddrError, Addresses},
};

#[derive(Debug, thiserror::Error)]
pub enum RoutersError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Netlink(#[from] AddrError),
}

pub struct Routers {
    instances: Vec<Instance>,
    tracked: watch::Sender<Tracked>,
    watched: BTreeSet<String>,
}

impl Routers {
    /// Starts one task per instance; `services_down` are the services
    /// without a usable backend right now.
    pub fn start(
        configs: &[VrrpConfig],
        services_down: BTreeSet<String>,
        leases: Option<super::lease::Leases>,
        gate: Option<crate::connsync::Gate>,
    ) -> Result<Self, RoutersError> {
        let watched = track::interfaces(configs);
        let (tracked, _) = watch::channel(Tracked {
            interfaces_down: track::interfaces_down(&watched),
            services_down,
        });
        let mut instances = Vec::new();
        if !configs.is_empty() {
            let addresses = Addresses::connect()?;
            for config in configs {
                instances.push(Instance::start(
                    config.clone(),
                    addresses.clone(),
                    tracked.subscribe(),
                    leases.clone(),
                    gate.clone(),
                )?);
                tracing::info!(
                    instance = config.name,
                    interface = config.interface,
                    vrid = config.vrid,
                    priority = config.priority,
                    "VRRP instance started"
                );
            }
        }
        Ok(Self {
            instances,
            tracked,
            watched,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn statuses(&self) -> Vec<VrrpStatus> {
        self.instances.iter().map(Instance::status).collect()
    }

    /// Records whether `service` has a usable backend.
    pub fn set_service_down(&self, service: &str, down: bool) {
        self.tracked.send_if_modified(|t| {
            if down {
                t.services_down.insert(service.to_owned())
            } else {
                t.services_down.remove(service)
            }
        });
    }

    /// Looks at the watched interfaces again; instances hear of changes.
    pub fn poll_interfaces(&self) {
        let down = track::interfaces_down(&self.watched);
        self.tracked.send_if_modified(|t| {
            if t.interfaces_down == down {
                return false;
            }
            tracing::info!(down = ?down, "tracked interfaces changed");
            t.interfaces_down = down;
            true
        });
    }

    /// Stops every instance the RFC way (priority 0 from a master,
    /// addresses removed), all at once.
    pub async fn shutdown(self) {
        futures_util::future::join_all(self.instances.into_iter().map(Instance::shutdown)).await;
    }
}
