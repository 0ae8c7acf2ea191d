//! Tracking, as keepalived's track_interface and track_script: what is down
//! right now, and what that does to an instance's priority. A tracked item
//! with weight 0 puts the instance in FAULT (it gives up the addresses and
//! stays silent) instead of lowering its priority.

use std::collections::BTreeSet;

use crate::config::validate::VrrpConfig;

/// What the agent sees failing; each instance picks what it tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Interfaces that are missing, down or without carrier.
    pub interfaces_down: BTreeSet<String>,
    /// Services with no usable backend.
    pub services_down: BTreeSet<String>,
}

/// What tracking makes of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Running at this priority.
    Priority(u8),
    /// Cannot serve: the reason.
    Fault(String),
}

/// The instance's standing given what is down: its own interface or a
/// weight-0 item down is a fault; otherwise the weights of the failing
/// items are added to the configured priority, kept within 1-254.
pub fn standing(config: &VrrpConfig, tracked: &Tracked) -> Standing {
    if tracked.interfaces_down.contains(&config.interface) {
        return Standing::Fault(format!("interface {} is down", config.interface));
    }
    let failing = config
        .track_interfaces
        .iter()
        .filter(|t| tracked.interfaces_down.contains(&t.name))
        .map(|t| (t, "interface"))
        .chain(
            config
                .track_services
                .iter()
                .filter(|t| tracked.services_down.contains(&t.name))
                .map(|t| (t, "service")),
        );
    let mut priority = i32::from(config.priority);
    for (track, kind) in failing {
        if track.weight == 0 {
            return Standing::Fault(format!("tracked {kind} {} is down", track.name));
        }
        priority += track.weight;
    }
    Standing::Priority(priority.clamp(1, 254) as u8)
}

/// Every interface some instance depends on, to be watched.
pub fn interfaces(configs: &[VrrpConfig]) -> BTreeSet<String> {
    configs
        .iter()
        .flat_map(|c| {
            std::iter::once(c.interface.clone())
                .chain(c.track_interfaces.iter().map(|t| t.name.clone()))
        })
        .collect()
}

/// The watched interfaces that cannot carry traffic now.
pub fn interfaces_down(watched: &BTreeSet<String>) -> BTreeSet<String> {
    watched
        .iter()
        .filter(|name| crate::net::iface::is_running(name) != Some(true))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{Garp, Track, VrrpVersion};
    use std::time::Duration;

    fn config() -> VrrpConfig {
        VrrpConfig {
            name: "vi".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: 100,
            version: VrrpVersion::V3,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            virtual_addresses: vec![("198.18.0.100".parse().unwrap(), 32)],
            label: None,
            auth_pass: None,
            checksum_as_v2: false,
            unicast_peers: vec![],
            garp: Garp {
                count: 5,
                repeat_after: Duration::from_secs(5),
                refresh: None,
            },
            track_interfaces: vec![
                Track {
                    name: "eth1".into(),
                    weight: -30,
                },
                Track {
                    name: "eth2".into(),
                    weight: 0,
                },
            ],
            track_services: vec![Track {
                name: "web".into(),
                weight: -80,
            }],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
        }
    }

    fn down(interfaces: &[&str], services: &[&str]) -> Tracked {
        Tracked {
            interfaces_down: interfaces.iter().map(|s| s.to_string()).collect(),
            services_down: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn weights_add_up_and_stay_in_range() {
        let c = config();
        assert_eq!(standing(&c, &down(&[], &[])), Standing::Priority(100));
        assert_eq!(standing(&c, &down(&["eth1"], &[])), Standing::Priority(70));
        assert_eq!(
            standing(&c, &down(&["eth1"], &["web"])),
            Standing::Priority(1)
        );
        assert!(matches!(
            standing(&c, &down(&["eth2"], &[])),
            Standing::Fault(_)
        ));
        assert!(matches!(
            standing(&c, &down(&["eth0"], &[])),
            Standing::Fault(_)
        ));
    }
}
