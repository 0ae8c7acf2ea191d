//! `[service.check]` and a backend's `check = { ... }` overrides.

use std::time::Duration;

use toml::Spanned;

use super::{CheckConfig, CheckKind, Errors, model};

/// haproxy's defaults: `inter 2s`, `rise 2`, `fall 3`; a check may take 1 s.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const CHECK_RISE: u32 = 2;
const CHECK_FALL: u32 = 3;

/// The check of one backend: the service's, with the backend's overrides.
pub(super) fn check(
    service: Option<&Spanned<model::Check>>,
    backend: Option<&Spanned<model::Check>>,
    backend_port: u16,
    errors: &mut Errors<'_, '_>,
) -> Option<CheckConfig> {
    if service.is_none() && backend.is_none() {
        return None;
    }
    let empty = model::Check::default();
    let s = service.map_or(&empty, |c| c.get_ref());
    let b = backend.map_or(&empty, |c| c.get_ref());
    // The backend's value where it has one, else the service's.
    macro_rules! pick {
        ($field:ident) => {
            b.$field.as_ref().or(s.$field.as_ref())
        };
    }
    let Some(kind_word) = pick!(kind) else {
        let span = backend.or(service).map_or(0..0, |c| c.span());
        errors.at(
            span,
            "check needs a type: type = \"tcp\" or type = \"http\"",
        );
        return None;
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Tcp,
        Http,
    }
    let kind = errors.choice(
        Some(kind_word),
        "check type",
        &[("tcp", Kind::Tcp), ("http", Kind::Http)],
        Kind::Tcp,
    );
    let mut duration = |value: Option<&Spanned<String>>, what: &str, default: Duration| {
        match value
    {
        None => default,
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|| {
            errors.at(
                v.span(),
                format!(
                    "{what} {:?} is not a duration of at most a year: write it like \"2s\" or \"500ms\"",
                    v.get_ref()
                ),
            );
            default
        }),
    }
    };
    let interval = duration(pick!(interval), "interval", CHECK_INTERVAL);
    let timeout = duration(pick!(timeout), "timeout", CHECK_TIMEOUT);
    if interval.is_zero() || timeout.is_zero() || timeout > interval {
        let span = pick!(timeout)
            .or(pick!(interval))
            .map_or(0..0, |v| v.span());
        errors.at(
            span,
            format!("check timeout ({timeout:?}) must be above zero and at most the interval ({interval:?})"),
        );
    }
    let mut count = |value: Option<&Spanned<u32>>, what: &str, default: u32| match value {
        None => default,
        Some(v) if *v.get_ref() == 0 => {
            errors.at(
                v.span(),
                format!("{what} must be at least 1 (consecutive checks)"),
            );
            default
        }
        Some(v) => *v.get_ref(),
    };
    let rise = count(pick!(rise), "rise", CHECK_RISE);
    let fall = count(pick!(fall), "fall", CHECK_FALL);
    let port = match pick!(port) {
        Some(p) if *p.get_ref() == 0 => {
            errors.at(
                p.span(),
                "check port 0 is not a port: leave it out to check the backend's port",
            );
            backend_port
        }
        Some(p) => *p.get_ref(),
        None => backend_port,
    };
    let kind = match kind {
        Kind::Tcp => {
            for (field, what) in [(pick!(path), "path"), (pick!(expect_body), "expect_body")] {
                if let Some(v) = field {
                    errors.at(v.span(), format!("{what} is for type = \"http\" checks: remove it, or make the check http"));
                }
            }
            if let Some(v) = pick!(expect_status) {
                errors.at(v.span(), "expect_status is for type = \"http\" checks: remove it, or make the check http");
            }
            CheckKind::Tcp
        }
        Kind::Http => {
            let path = pick!(path).map_or("/".to_owned(), |p| p.get_ref().clone());
            if !path.starts_with('/')
                && let Some(p) = pick!(path)
            {
                errors.at(
                    p.span(),
                    format!("path {path:?} must start with '/', e.g. \"/health\""),
                );
            }
            let expect_status = pick!(expect_status).map_or(200, |s| *s.get_ref());
            if !(100..=599).contains(&expect_status)
                && let Some(s) = pick!(expect_status)
            {
                errors.at(
                    s.span(),
                    format!("expect_status {expect_status} is not an HTTP status (100-599)"),
                );
            }
            CheckKind::Http {
                path,
                expect_status,
                expect_body: pick!(expect_body).map(|b| b.get_ref().clone()),
            }
        }
    };
    Some(CheckConfig {
        kind,
        interval,
        timeout,
        rise,
        fall,
        port,
    })
}

/// "500ms", "2s", "1m", "1.5s" to a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    // Refuses, rather than panics on, what does not fit a Duration
    // ("99999999999999999999s"), and what would overflow a deadline
    // (`Instant::now() + d`): nothing here needs more than a year.
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// The longest duration a config may give.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses the duration in `value`, reporting `what` at its position when
/// it is not one.
pub(super) fn parse_duration_at(
    value: &Spanned<String>,
    what: &str,
    errors: &mut Errors<'_, '_>,
) -> Option<Duration> {
    let parsed = parse_duration(value.get_ref());
    if parsed.is_none() {
        errors.at(
            value.span(),
            format!(
                "{what} {:?} is not a duration of at most a year: write it like \"2s\" or \"500ms\"",
                value.get_ref()
            ),
        );
    }
    parsed
}
