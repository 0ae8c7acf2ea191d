//! Received VRRP messages through `vrrp::packet::decode` and the receive
//! checks (`vrrp::check::Expect::check`): no panic; a message whose
//! checksum was made right is never refused for its checksum; what decodes
//! encodes back to the same advert; what the checks pass matches them.

#![no_main]

use halb::vrrp::{
    check::{Expect, Reject},
    io::Received,
    packet::{self, DecodeError, Version},
};
use halb_fuzz::advert::{Case, fix_checksum};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some(mut case) = Case::from_bytes(data) else {
        return;
    };
    let mut message = std::mem::take(&mut case.message);
    let fixed = case.fix_checksum && fix_checksum(&mut message, &case);
    let decoded = packet::decode(&message, case.src, case.dst, case.version, case.mode);
    if fixed {
        assert_ne!(
            decoded,
            Err(DecodeError::Checksum),
            "checksum computed per RFC refused"
        );
    }
    if let Ok(advert) = &decoded {
        // encode writes a v2 interval of 0 as 1 s, its smallest.
        if !(advert.version == Version::V2 && advert.interval.is_zero()) {
            let again = packet::encode(advert, case.src, case.dst, case.mode);
            assert_eq!(
                packet::decode(&again, case.src, case.dst, case.version, case.mode).as_ref(),
                Ok(advert),
                "re-encoded as {again:02x?}"
            );
        }
    }

    let v6 = case.src.is_ipv6();
    let expect = Expect {
        version: case.version,
        checksum: case.mode,
        vrid: 51,
        advert_interval: Duration::from_secs(1),
        password: (case.version == Version::V2).then_some(*b"halbpass"),
        unicast_peers: vec![],
        addresses: vec![
            if v6 { "2001:db8::100" } else { "198.18.0.100" }
                .parse()
                .expect("address"),
        ],
    };
    let received = Received {
        src: case.src,
        dst: case.dst,
        ttl: case.ttl,
        payload: message,
    };
    match expect.check(&received) {
        Ok(advert) => {
            assert_eq!(received.ttl, 255);
            assert_eq!(Ok(&advert), decoded.as_ref());
            assert_eq!(advert.vrid, expect.vrid);
            if case.version == Version::V2 {
                assert_eq!(advert.password, expect.password);
                assert_eq!(advert.interval, expect.advert_interval);
            }
        }
        Err(Reject::Ttl) => assert_ne!(received.ttl, 255),
        Err(_) => {}
    }
});
