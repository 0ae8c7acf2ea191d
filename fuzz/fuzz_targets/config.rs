//! Config text through `config::from_str` (parse and validate): it must
//! never panic; a refusal points inside the text; an accepted config holds
//! what the agent relies on without checking again.

#![no_main]

use halb::{
    config::{ValidatedConfig, validate::VrrpVersion},
    proxy::route::Routes,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    // `config::load` reads the file as UTF-8; lossy decoding lets every
    // input reach the parser, and puts multi-byte characters in the text.
    let text = String::from_utf8_lossy(data);
    match halb::config::from_str(&text) {
        Ok(config) => accepted(&config),
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "refused without a reason");
            let lines: Vec<&str> = text.split('\n').collect();
            for d in &diagnostics {
                assert!(
                    (1..=lines.len()).contains(&d.line),
                    "line {} of a {}-line text: {d:?}",
                    d.line,
                    lines.len()
                );
                let columns = lines[d.line - 1].chars().count() + 1;
                assert!(
                    (1..=columns).contains(&d.column),
                    "column {} of a {columns}-column line: {d:?}",
                    d.column
                );
            }
        }
    }
});

fn accepted(config: &ValidatedConfig) {
    for v in &config.vrrp {
        // vrrp::instance copies the password into the advert's 8 bytes.
        if let Some(pass) = &v.auth_pass {
            assert!((1..=8).contains(&pass.len()), "auth_pass {pass:?}");
        }
        // vrrp::packet::encode clamps what does not fit the field.
        let fits = match v.version {
            VrrpVersion::V3 => {
                v.advert_interval >= Duration::from_millis(10)
                    && v.advert_interval <= Duration::from_millis(40_950)
            }
            VrrpVersion::V2 => (1..=255).contains(&v.advert_interval.as_secs()),
        };
        assert!(
            fits,
            "advert_interval {:?} in {:?}",
            v.advert_interval, v.version
        );
    }
    for s in &config.services {
        if let Some(http) = &s.http {
            let pick = Routes::new(http).pick(&http::Request::new(()));
            assert!(
                pick < http.pools.len(),
                "pool {pick} of {}",
                http.pools.len()
            );
        }
    }
}
