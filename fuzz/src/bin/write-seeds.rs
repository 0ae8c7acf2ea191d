//! Writes the seed corpus of the binary targets into fuzz/seeds/, from the
//! product's own encoders: adverts from `vrrp::packet::encode` (v2 and v3,
//! IPv4 and IPv6), announcements for `net::garp::frames`, HTTP requests,
//! and the rules of the shipped examples. fuzz/seeds/config (the config
//! target also reads examples/) and the `regression-*` seeds are written
//! by hand. Run it after changing a layout:
//! `AYA_BUILD_SKIP=1 cargo run --manifest-path fuzz/Cargo.toml --bin write-seeds`.

use std::{net::IpAddr, path::Path, time::Duration};

use halb::vrrp::packet::{self, Advert, ChecksumMode, Version};
use halb_fuzz::{advert, announce};

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).expect("create the seeds folder");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    };

    for (name, flags, advert) in adverts() {
        let (src, dst) = if flags & advert::IPV6 != 0 {
            (advert::SRC6, advert::DST6)
        } else {
            (advert::SRC4, advert::DST4)
        };
        let mode = if flags & advert::AS_V2 != 0 {
            ChecksumMode::AsV2
        } else {
            ChecksumMode::Rfc
        };
        let bytes = packet::encode(&advert, src, dst, mode);
        write("vrrp_advert", name, &advert::input(flags, &bytes));
    }

    let mac = [0x02, 0, 0x5e, 0, 0x01, 0x33];
    for (name, addr) in [
        ("ipv4", "198.18.0.100"),
        ("ipv6", "2001:db8::100"),
        ("ipv6-link-local", "fe80::1"),
    ] {
        let addr: IpAddr = addr.parse().expect("address");
        write("garp", name, &announce::input(addr, mac));
    }

    for (name, request) in REQUESTS {
        write("http_route", name, request.as_bytes());
    }

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (name, config) in [
        ("url-static", "examples/url-static.toml"),
        ("all-conditions", "fuzz/rules/all-conditions.toml"),
    ] {
        let text = std::fs::read_to_string(examples.join(config)).expect("read a rule set");
        let rules = rule_tables(&text);
        for (request_name, request) in REQUESTS.iter().take(3) {
            let mut seed = rules.clone().into_bytes();
            seed.push(0);
            seed.extend_from_slice(request.as_bytes());
            write("http_rules", &format!("{name}-{request_name}"), &seed);
        }
    }
}

/// The `[[service.http.rule]]` tables of a config, as text.
fn rule_tables(config: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in config.lines() {
        if line.starts_with('[') {
            inside = line.trim() == "[[service.http.rule]]";
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn adverts() -> Vec<(&'static str, u8, Advert)> {
    use advert::{AS_V2, FIX_CHECKSUM, IPV6, TTL_255, V3};
    let v4: IpAddr = "198.18.0.100".parse().expect("address");
    let v6: IpAddr = "2001:db8::100".parse().expect("address");
    let v2 = Advert {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        interval: Duration::from_secs(1),
        addresses: vec![v4],
        password: Some(*b"halbpass"),
    };
    let v3 = Advert {
        version: Version::V3,
        password: None,
        ..v2.clone()
    };
    vec![
        ("v2-ipv4-password", TTL_255, v2.clone()),
        (
            "v2-ipv4-no-auth",
            TTL_255,
            Advert {
                password: None,
                ..v2.clone()
            },
        ),
        (
            "v2-ipv4-two-addresses-fix-checksum",
            TTL_255 | FIX_CHECKSUM,
            Advert {
                addresses: vec![v4, "198.18.0.101".parse().expect("address")],
                ..v2.clone()
            },
        ),
        ("v3-ipv4", V3 | TTL_255, v3.clone()),
        ("v3-ipv4-as-v2", V3 | AS_V2 | TTL_255, v3.clone()),
        (
            "v3-ipv4-owner-ttl-64",
            V3,
            Advert {
                priority: 255,
                ..v3.clone()
            },
        ),
        (
            "v3-ipv6",
            V3 | IPV6 | TTL_255,
            Advert {
                addresses: vec![v6, "2001:db8::101".parse().expect("address")],
                interval: Duration::from_millis(250),
                ..v3.clone()
            },
        ),
        (
            "v3-ipv6-leaving-fix-checksum",
            V3 | IPV6 | TTL_255 | FIX_CHECKSUM,
            Advert {
                addresses: vec![v6],
                priority: 0,
                ..v3
            },
        ),
    ]
}

const REQUESTS: [(&str, &str); 6] = [
    (
        "get-root",
        "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
    ),
    (
        "get-static-png-with-port",
        "GET /app/Logo.PNG?v=2 HTTP/1.1\r\nHost: Static.Example.com:8080\r\nAccept: */*\r\n\r\n",
    ),
    (
        "post-api-json",
        "POST /api/v1/orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
    ),
    (
        "head-ipv6-host",
        "HEAD /v2/assets/app.js HTTP/1.1\r\nHost: [2001:db8::80]:80\r\nX-Pool: the-static-one\r\n\r\n",
    ),
    (
        "absolute-form",
        "GET http://static.example.com/images/a.gif HTTP/1.1\r\nX-Api-Key: k\r\n\r\n",
    ),
    (
        "http10-no-host",
        "DELETE /V3/USERS/42 HTTP/1.0\r\nUser-Agent: curl/8\r\n\r\n",
    ),
];
