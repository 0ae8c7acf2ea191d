//! Validation: defaults, and broken configs with where and what.

use super::*;
use crate::config::from_str;

#[test]
fn minimal_config_gets_defaults() {
    let config = from_str("[datapath]\ninterfaces = [\"eth0\"]\n").expect("valid");
    assert_eq!(
        config.datapath,
        Datapath {
            interfaces: vec!["eth0".into()],
            xdp_mode: XdpMode::Native,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            log_level: DatapathLogLevel::Info,
            maglev_table_size: DEFAULT_RING_SIZE,
            nat_ports: (DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX),
            tcp_timeout: Duration::from_secs(900),
            tcp_closing_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(300),
        }
    );
    assert!(config.services.is_empty());
}

/// Each broken config, the position of its first error and a phrase of it.
const BROKEN: &[(&str, &str, (usize, usize), &str)] = &[
    (
        "unknown key",
        "[datapath]\ninterfaces = [\"eth0\"]\nxdp_mod = \"native\"\n",
        (3, 1),
        "unknown field `xdp_mod`",
    ),
    (
        "missing table",
        "# nothing here\n",
        (1, 1),
        "missing field `datapath`",
    ),
    (
        "interfaces missing",
        "[datapath]\nxdp_mode = \"native\"\n",
        (1, 1),
        "missing field `interfaces`",
    ),
    (
        "no interface",
        "[datapath]\ninterfaces = []\n",
        (2, 14),
        "list at least one",
    ),
    (
        "duplicate interface",
        "[datapath]\ninterfaces = [\"eth0\", \"eth0\"]\n",
        (2, 23),
        "listed twice",
    ),
    (
        "interface name too long",
        "[datapath]\ninterfaces = [\"a-very-long-interface\"]\n",
        (2, 15),
        "is not valid",
    ),
    (
        "bad xdp mode",
        "[datapath]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n",
        (3, 12),
        "use \"native\" or \"generic\"",
    ),
    (
        "relative pin dir",
        "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"halb\"\n",
        (3, 11),
        "absolute folder",
    ),
    (
        "bad log level",
        "[datapath]\ninterfaces = [\"eth0\"]\nlog_level = \"loud\"\n",
        (3, 13),
        "is not known",
    ),
    (
        "wrong type",
        "[datapath]\ninterfaces = \"eth0\"\n",
        (2, 14),
        "invalid type",
    ),
    (
        "toml syntax",
        "[datapath\ninterfaces = [\"eth0\"]\n",
        (1, 10),
        "",
    ),
    (
        "bad VIP address",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.300\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (5, 7),
        "is not an IP address",
    ),
    (
        "duplicate service",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"a\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n[[service]]\nname = \"b\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (12, 7),
        "another service already listens on 198.18.0.100 port 80",
    ),
    (
        "all weights zero",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nweight = 0\n",
        (4, 8),
        "has weight 0",
    ),
    (
        "backend port 0",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nport = 0\n",
        (10, 8),
        "backend port 0 is not a port",
    ),
    (
        "VIP family differs from backend family",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"2001:db8::11\"\n",
        (9, 11),
        "different families",
    ),
    (
        "full NAT without snat_address",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (4, 8),
        "needs snat_address",
    ),
    (
        "no backend",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n",
        (4, 8),
        "has no backend",
    ),
    (
        "MAC outside dsr mode",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
        (10, 7),
        "mac is only used in dsr mode",
    ),
    (
        "unknown check type",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"icmp\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (9, 8),
        "check type \"icmp\" is not known",
    ),
    (
        "check timeout beyond the interval",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"2s\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (11, 11),
        "at most the interval",
    ),
    (
        "a duration past any deadline",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"tcp\"\ninterval = \"10000000000000000000s\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (10, 12),
        "at most a year",
    ),
    (
        "bad duration",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"tcp\"\ninterval = \"soon\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (10, 12),
        "is not a duration",
    ),
    (
        "reset policy on UDP",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"dns\"\nvip = \"198.18.0.100\"\nport = 53\nprotocol = \"udp\"\nmode = \"dsr\"\nwhen_all_down = \"reset\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (9, 17),
        "UDP has no reset",
    ),
    (
        "maglev table size not prime",
        "[datapath]\ninterfaces = [\"eth0\"]\nmaglev_table_size = 65536\n",
        (3, 21),
        "must be a prime",
    ),
    (
        "NAT ports reversed",
        "[datapath]\ninterfaces = [\"eth0\"]\nnat_ports = [30000, 20000]\n",
        (3, 13),
        "1024 <= first <= last",
    ),
    (
        "relative control socket",
        "[datapath]\ninterfaces = [\"eth0\"]\n[admin]\ncontrol_socket = \"halb.sock\"\n",
        (4, 18),
        "absolute file path",
    ),
    (
        "service name used twice",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n[[service]]\nname = \"web\"\nvip = \"198.18.0.101\"\nport = 80\nmode = \"dsr\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
        (11, 8),
        "is used twice",
    ),
    (
        "VRRP vrid 0",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 0\npriority = 100\nvirtual_addresses = [\"198.18.0.100/32\"]\n",
        (6, 8),
        "outside 1-255",
    ),
    (
        "VRRP priority 255",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 255\nvirtual_addresses = [\"198.18.0.100/32\"]\n",
        (7, 12),
        "outside 1-254",
    ),
    (
        "VRRPv2 with an IPv6 address",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nversion = 2\nvirtual_addresses = [\"2001:db8::100/128\"]\n",
        (9, 22),
        "IPv4 addresses only",
    ),
    (
        "auth_pass with VRRPv3",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nvirtual_addresses = [\"198.18.0.100/32\"]\nauth_pass = \"secret\"\n",
        (9, 13),
        "VRRPv3 has no authentication",
    ),
    (
        "checksum_as_v2 with VRRPv2",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nversion = 2\nvirtual_addresses = [\"198.18.0.100/32\"]\nchecksum_as_v2 = true\n",
        (10, 18),
        "VRRPv3 over IPv4 only",
    ),
    (
        "forwarded_for_except without a prefix",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\nforwarded_for_except = \"10.0.0.0\"\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n",
        (10, 24),
        "is not a network",
    ),
    (
        "HTTP maxconn of 0",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\nmaxconn = 0\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n",
        (10, 11),
        "maxconn must be at least 1",
    ),
    (
        "HTTP rule to an unknown pool",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n[[service.http.rule]]\npool = \"static\"\npath_beg = [\"/static\"]\n",
        (15, 8),
        "no pool \"static\"",
    ),
    (
        "HTTP path regex that does not compile",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n[[service.http.rule]]\npool = \"app\"\npath_regex = \"(\"\n",
        (16, 14),
        "does not compile",
    ),
    (
        "duration too large for the agent",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.check]\ntype = \"tcp\"\ninterval = \"99999999999999999999s\"\n[[service.backend]]\naddress = \"198.18.1.11\"\n",
        (10, 12),
        "is not a duration",
    ),
    (
        "HTTP header rule with no valid header name",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n[[service.http.rule]]\npool = \"app\"\nheader = { name = \"X Pool\" }\n",
        (16, 10),
        "is not an HTTP header name",
    ),
    (
        // Compiles as written, but not without case (as the proxy runs it).
        "HTTP path regex too large once case is ignored",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"www\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[service.http]\ndefault_pool = \"app\"\n[[service.http.pool]]\nname = \"app\"\n[[service.http.pool.backend]]\naddress = \"198.18.0.11\"\n[[service.http.rule]]\npool = \"app\"\nignore_case = true\npath_regex = \"k{50000}\"\n",
        (17, 14),
        "does not compile",
    ),
    (
        "VRRP tracking an unknown service",
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nvirtual_addresses = [\"198.18.0.100/32\"]\ntrack_service = [{ name = \"web\", weight = -50 }]\n",
        (9, 27),
        "no service \"web\" to track",
    ),
];

#[test]
fn broken_configs_name_line_column_and_fix() {
    for (name, text, (line, column), phrase) in BROKEN {
        let errors = from_str(text).expect_err(name);
        let first = &errors[0];
        assert_eq!(
            (first.line, first.column),
            (*line, *column),
            "{name}: {first:?}"
        );
        assert!(first.message.contains(phrase), "{name}: {first:?}");
    }
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = "[datapath]\ninterfaces = [\"\"]\nxdp_mode = \"x\"\nlog_level = \"y\"\n";
    assert_eq!(from_str(text).expect_err("three errors").len(), 3);
}

#[test]
fn garp_refresh_zero_means_no_refresh_as_in_keepalived() {
    let text = "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 100\nvirtual_addresses = [\"198.18.0.100/32\"]\ngarp_refresh = \"0s\"\n";
    let config = from_str(text).expect("valid");
    assert_eq!(config.vrrp[0].garp.refresh, None);
}

const SYNC_HEAD: &str = "[datapath]\ninterfaces = [\"eth0\"]\n\n[sync]\n";

#[test]
fn sync_splits_the_nat_ports_between_the_nodes() {
    let text = |listen: &str| {
        format!(
            "{SYNC_HEAD}listen = \"{listen}\"\npeers = [\"198.18.0.3:7900\", \"198.18.0.2:7900\"]\nkey = \"0123456789abcdef\"\n"
        )
        .replace(&format!("\"{listen}\", "), "")
        .replace(&format!(", \"{listen}\""), "")
    };
    let shares: Vec<(u16, u16)> = ["198.18.0.2:7900", "198.18.0.3:7900", "198.18.0.4:7900"]
        .iter()
        .map(|listen| {
            let mut config = text(listen);
            if !config.contains("198.18.0.4:7900") {
                config = config.replace("peers = [", "peers = [\"198.18.0.4:7900\", ");
            }
            let sync = from_str(&config).expect("valid").sync.expect("sync");
            assert_eq!(sync.nodes, 3);
            assert_eq!(sync.resync_timeout, Duration::from_secs(5));
            sync.nat_ports((DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX))
        })
        .collect();
    // Disjoint, in order, each within the whole range.
    assert_eq!(shares[0].0, DEFAULT_NAT_PORT_MIN);
    assert!(shares[0].1 < shares[1].0 && shares[1].1 < shares[2].0);
    assert!(shares[2].1 <= DEFAULT_NAT_PORT_MAX);
}

#[test]
fn broken_sync_tables_are_reported_where_they_are() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "listen = \"198.18.0.2\"\npeers = [\"198.18.0.3:7900\"]\nkey = \"0123456789abcdef\"\n",
            (5, 10),
            "address and UDP port",
        ),
        (
            "listen = \"198.18.0.2:7900\"\npeers = [\"198.18.0.2:7900\"]\nkey = \"0123456789abcdef\"\n",
            (6, 10),
            "this node's own listen address",
        ),
        (
            "listen = \"198.18.0.2:7900\"\npeers = [\"198.18.0.3:7900\"]\nkey = \"short\"\n",
            (7, 7),
            "at least 16",
        ),
        (
            "listen = \"198.18.0.2:7900\"\npeers = [\"198.18.0.3:7900\"]\n",
            (5, 10),
            "no shared key",
        ),
        (
            "listen = \"198.18.0.2:7900\"\npeers = [\"[2001:db8::3]:7900\"]\nkey = \"0123456789abcdef\"\n",
            (6, 10),
            "family",
        ),
        (
            "listen = \"198.18.0.2:7900\"\npeers = []\nkey = \"0123456789abcdef\"\n",
            (6, 9),
            "no peers",
        ),
    ];
    for (body, (line, column), phrase) in cases {
        let errors = from_str(&format!("{SYNC_HEAD}{body}")).expect_err(body);
        let first = &errors[0];
        assert_eq!(
            (first.line, first.column),
            (*line, *column),
            "{body}: {errors:?}"
        );
        assert!(first.message.contains(phrase), "{body}: {}", first.message);
    }
}

#[test]
fn a_full_nat_service_on_a_node_address_is_warned_about_in_ha() {
    let text = "[datapath]\ninterfaces = [\"eth0\"]\n\n\
        [[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nsnat_address = \"198.18.0.2\"\n\
        [[service.backend]]\naddress = \"198.18.0.11\"\n\n\
        [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
        virtual_addresses = [\"198.18.0.100/32\"]\n";
    let config = from_str(text).expect("a warning is no error");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let w = &config.warnings[0];
    assert_eq!((w.line, w.column), (8, 16));
    assert!(
        w.message.contains("cannot survive a failover"),
        "{}",
        w.message
    );
    // Floating: no warning.
    let floating = text
        .replace(
            "snat_address = \"198.18.0.2\"",
            "snat_address = \"198.18.0.101\"",
        )
        .replace(
            "[\"198.18.0.100/32\"]",
            "[\"198.18.0.100/32\", \"198.18.0.101/32\"]",
        );
    assert!(from_str(&floating).expect("valid").warnings.is_empty());
}

const BGP_HEAD: &str = "[datapath]\ninterfaces = [\"eth0\"]\n\n[bgp]\n";

#[test]
fn bgp_gets_defaults_and_its_neighbors() {
    let config = from_str(&format!(
        "{BGP_HEAD}local_as = 65001\n[[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65000\n"
    ))
    .expect("valid");
    let bgp = config.bgp.expect("bgp");
    assert_eq!(bgp.include, PathBuf::from(DEFAULT_INCLUDE));
    assert_eq!(bgp.bird_socket, PathBuf::from(DEFAULT_BIRD_SOCKET));
    assert_eq!(bgp.local_as, Some(65001));
    assert_eq!(
        bgp.neighbors,
        vec![Neighbor {
            address: "198.18.1.1".parse().unwrap(),
            remote_as: 65000,
            bfd: true,
        }]
    );
    assert_eq!(
        (bgp.bfd_interval, bgp.bfd_multiplier, bgp.shutdown_grace),
        (Duration::from_millis(100), 3, Duration::from_secs(2))
    );
}

#[test]
fn broken_bgp_tables_are_reported_where_they_are() {
    let router = "[[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65000\n";
    let cases: Vec<(String, (usize, usize), &str)> = vec![
        (router.to_owned(), (4, 1), "no local_as"),
        (format!("local_as = 0\n{router}"), (5, 12), "AS number"),
        (
            "local_as = 65001\n[[bgp.neighbor]]\naddress = \"router\"\nas = 65000\n".to_owned(),
            (7, 11),
            "the router's address",
        ),
        (
            format!("local_as = 65001\n{router}{router}"),
            (9, 1),
            "listed twice",
        ),
        (
            "bfd_interval = \"1ms\"\n".to_owned(),
            (5, 16),
            "10ms to 10s",
        ),
        ("bfd_multiplier = 300\n".to_owned(), (5, 18), "1 to 255"),
        (
            "include = \"halb.conf\"\n".to_owned(),
            (5, 11),
            "absolute path",
        ),
    ];
    for (body, (line, column), phrase) in &cases {
        let errors = from_str(&format!("{BGP_HEAD}{body}")).expect_err(body);
        let first = &errors[0];
        assert_eq!(
            (first.line, first.column),
            (*line, *column),
            "{body}: {errors:?}"
        );
        assert!(first.message.contains(phrase), "{body}: {}", first.message);
    }
}
