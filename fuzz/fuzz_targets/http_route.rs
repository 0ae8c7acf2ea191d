//! HTTP requests (bytes as a client sends them, parsed as hyper parses
//! them) through `proxy::route::Routes::pick`, against fixed rule sets:
//! examples/url-static.toml and fuzz/rules/all-conditions.toml. The pool
//! picked must be the one the rules' documented meaning gives.

#![no_main]

use std::sync::LazyLock;

use halb::proxy::route::Routes;
use halb_fuzz::{request, rules::Reference};
use libfuzzer_sys::fuzz_target;

const RULE_SETS: [(&str, &str); 2] = [
    ("url-static", include_str!("../../examples/url-static.toml")),
    (
        "all-conditions",
        include_str!("../rules/all-conditions.toml"),
    ),
];

static COMPILED: LazyLock<Vec<(&str, Routes, Reference)>> = LazyLock::new(|| {
    RULE_SETS
        .iter()
        .map(|(name, text)| {
            let config = halb::config::from_str(text)
                .unwrap_or_else(|e| panic!("{name} is a valid config: {e:?}"));
            let http = config.services[0].http.as_ref().expect("an http service");
            (*name, Routes::new(http), Reference::new(http))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some(request) = request::parse(data) else {
        return;
    };
    for (name, routes, reference) in COMPILED.iter() {
        let picked = routes.pick(&request);
        if let Some(want) = reference.pick(&request) {
            assert_eq!(picked, want, "{name}: {request:?}");
        }
    }
});
