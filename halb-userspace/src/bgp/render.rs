//! The BIRD 2 config fragment halb writes: the VIPs as static routes, the
//! filter that exports them (with the GRACEFUL_SHUTDOWN community while
//! the node drains), BFD, and a BGP session per configured router.

use std::{collections::BTreeSet, fmt::Write, net::IpAddr};

use crate::config::validate::{BgpConfig, Neighbor};

/// RFC 8326: receivers lower the preference of routes carrying it.
pub const GRACEFUL_SHUTDOWN: (u16, u16) = (65535, 0);
/// Names of the two static protocols that hold the VIPs.
pub const STATIC4: &str = "halb_vips4";
pub const STATIC6: &str = "halb_vips6";
/// The export filter, for sessions that bird.conf defines itself.
pub const EXPORT_FILTER: &str = "halb_export";

/// A node back from a failure (its link, its BIRD, the router) rejoins
/// within seconds: BIRD's defaults wait 60 s after an error (up to 300 s
/// after repeated ones, remembered for 300 s), and 120 s between
/// connection attempts. Repeated errors still back off, to 10 s.
const RETRY: &str = "connect delay time 1;\n  connect retry time 5;\n  error wait time 1, 10;\n  error forget time 30;";

/// What to announce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    pub vips: BTreeSet<IpAddr>,
    /// A planned stop is under way: the routes carry GRACEFUL_SHUTDOWN.
    pub draining: bool,
}

/// The BGP protocol's name for `neighbor`: stable as long as its address is.
pub fn session_name(neighbor: &Neighbor) -> String {
    let address: String = neighbor
        .address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("halb_{address}")
}

/// The include file for `announcement` under `config`.
pub fn render(config: &BgpConfig, announcement: &Announcement) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by halb ([bgp] in its config): every change rewrites it.\n\
         # bird.conf includes it: include \"{}\";\n",
        config.include.display()
    );
    let community = if announcement.draining {
        format!(
            "  bgp_community.add(({}, {}));\n",
            GRACEFUL_SHUTDOWN.0, GRACEFUL_SHUTDOWN.1
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "filter {EXPORT_FILTER} {{\n  if proto != \"{STATIC4}\" && proto != \"{STATIC6}\" then reject;\n{community}  accept;\n}}\n"
    );
    for (name, channel, v4) in [(STATIC4, "ipv4", true), (STATIC6, "ipv6", false)] {
        let _ = writeln!(out, "protocol static {name} {{\n  {channel};");
        for vip in announcement.vips.iter().filter(|v| v.is_ipv4() == v4) {
            let len = if v4 { 32 } else { 128 };
            let _ = writeln!(out, "  route {vip}/{len} blackhole;");
        }
        let _ = writeln!(out, "}}\n");
    }
    if config.neighbors.iter().any(|n| n.bfd) {
        let ms = config.bfd_interval.as_millis();
        let _ = writeln!(
            out,
            "protocol bfd halb_bfd {{\n  interface \"*\" {{\n    min rx interval {ms} ms;\n    min tx interval {ms} ms;\n    multiplier {};\n  }};\n}}\n",
            config.bfd_multiplier
        );
    }
    for neighbor in &config.neighbors {
        let channel = if neighbor.address.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        let _ = writeln!(
            out,
            "protocol bgp {} {{\n  local as {};\n  neighbor {} as {};\n  bfd {};\n  {RETRY}\n  {channel} {{\n    import none;\n    export filter {EXPORT_FILTER};\n  }};\n}}\n",
            session_name(neighbor),
            config.local_as.unwrap_or_default(),
            neighbor.address,
            neighbor.remote_as,
            if neighbor.bfd { "on" } else { "off" },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;

    fn config(neighbors: Vec<Neighbor>) -> BgpConfig {
        BgpConfig {
            include: PathBuf::from("/etc/bird/halb.conf"),
            bird_socket: PathBuf::from("/run/bird/bird.ctl"),
            local_as: Some(65001),
            neighbors,
            bfd_interval: Duration::from_millis(100),
            bfd_multiplier: 3,
            shutdown_grace: Duration::from_secs(2),
        }
    }

    #[test]
    fn vips_become_static_routes_of_their_family_and_sessions_export_them() {
        let router = Neighbor {
            address: "198.18.1.1".parse().unwrap(),
            remote_as: 65000,
            bfd: true,
        };
        let announcement = Announcement {
            vips: ["198.18.0.100", "2001:db8::100"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            draining: false,
        };
        let text = render(&config(vec![router]), &announcement);
        assert!(
            text.contains(
                "protocol static halb_vips4 {\n  ipv4;\n  route 198.18.0.100/32 blackhole;\n}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "protocol static halb_vips6 {\n  ipv6;\n  route 2001:db8::100/128 blackhole;\n}"
            ),
            "{text}"
        );
        assert!(text.contains("protocol bgp halb_198_18_1_1 {\n  local as 65001;\n  neighbor 198.18.1.1 as 65000;\n  bfd on;\n"), "{text}");
        assert!(
            text.contains("  ipv4 {\n    import none;\n    export filter halb_export;\n  };"),
            "{text}"
        );
        assert!(text.contains("min rx interval 100 ms;"), "{text}");
        assert!(!text.contains("bgp_community"), "{text}");
    }

    #[test]
    fn draining_adds_graceful_shutdown_and_nothing_announced_leaves_empty_statics() {
        let draining = render(
            &config(Vec::new()),
            &Announcement {
                vips: ["198.18.0.100".parse().unwrap()].into(),
                draining: true,
            },
        );
        assert!(
            draining.contains("bgp_community.add((65535, 0));"),
            "{draining}"
        );
        // No routers configured: no BFD, no sessions; bird.conf's own use the filter.
        assert!(!draining.contains("protocol bfd"), "{draining}");
        assert!(!draining.contains("protocol bgp"), "{draining}");
        let none = render(&config(Vec::new()), &Announcement::default());
        assert!(
            none.contains("protocol static halb_vips4 {\n  ipv4;\n}"),
            "{none}"
        );
    }
}
