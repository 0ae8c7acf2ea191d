//! Checks a parsed [`model::Config`] and turns it into a [`ValidatedConfig`]
//! whose fields are known good and never optional.

use std::{collections::HashSet, ops::Range, path::PathBuf};

use halb_common::maps::DEFAULT_PIN_DIR;

use super::{Diagnostic, Positions, model};

/// A config that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedConfig {
    pub datapath: Datapath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datapath {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pin_dir: PathBuf,
    pub log_level: DatapathLogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before the kernel allocates an skb: the fast path.
    Native,
    /// After skb allocation; works on any interface, for testing.
    Generic,
}

/// Levels of the XDP program's log lines, as aya-log numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathLogLevel {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

pub fn validate(
    raw: model::Config,
    positions: &Positions<'_>,
) -> Result<ValidatedConfig, Vec<Diagnostic>> {
    let mut errors = Errors {
        positions,
        list: Vec::new(),
    };
    let datapath = datapath(raw.datapath, &mut errors);
    if errors.list.is_empty() {
        Ok(ValidatedConfig { datapath })
    } else {
        Err(errors.list)
    }
}

struct Errors<'a, 'b> {
    positions: &'a Positions<'b>,
    list: Vec<Diagnostic>,
}

impl Errors<'_, '_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.list
            .push(self.positions.diagnostic(span.start, message.into()));
    }
}

fn datapath(raw: model::Datapath, errors: &mut Errors<'_, '_>) -> Datapath {
    if raw.interfaces.get_ref().is_empty() {
        errors.at(
            raw.interfaces.span(),
            "no interface to attach the datapath to: list at least one, e.g. interfaces = [\"eth0\"]",
        );
    }
    let mut interfaces = Vec::new();
    let mut seen = HashSet::new();
    for name in raw.interfaces.into_inner() {
        let span = name.span();
        let name = name.into_inner();
        if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains(['/', ' ', ':']) {
            errors.at(
                span,
                format!(
                    "interface name {name:?} is not valid: use 1 to {MAX_IFNAME_LEN} characters without '/', ':' or spaces, as `ip link` shows it"
                ),
            );
        } else if !seen.insert(name.clone()) {
            errors.at(
                span,
                format!("interface {name:?} is listed twice: remove one"),
            );
        } else {
            interfaces.push(name);
        }
    }

    let xdp_mode = match raw.xdp_mode {
        None => XdpMode::Native,
        Some(mode) => match mode.get_ref().as_str() {
            "native" => XdpMode::Native,
            "generic" => XdpMode::Generic,
            other => {
                errors.at(
                    mode.span(),
                    format!("xdp_mode {other:?} is not known: use \"native\" or \"generic\""),
                );
                XdpMode::Native
            }
        },
    };

    let pin_dir = match raw.pin_dir {
        None => PathBuf::from(DEFAULT_PIN_DIR),
        Some(dir) => {
            let path = PathBuf::from(dir.get_ref());
            if !path.is_absolute() || path.parent().is_none() {
                errors.at(
                    dir.span(),
                    format!(
                        "pin_dir {:?} must be an absolute folder inside bpffs, e.g. \"{DEFAULT_PIN_DIR}\"",
                        dir.get_ref()
                    ),
                );
            }
            path
        }
    };

    let log_level = match raw.log_level {
        None => DatapathLogLevel::Info,
        Some(level) => match level.get_ref().as_str() {
            "off" => DatapathLogLevel::Off,
            "error" => DatapathLogLevel::Error,
            "warn" => DatapathLogLevel::Warn,
            "info" => DatapathLogLevel::Info,
            "debug" => DatapathLogLevel::Debug,
            "trace" => DatapathLogLevel::Trace,
            other => {
                errors.at(
                    level.span(),
                    format!(
                        "log_level {other:?} is not known: use one of off, error, warn, info, debug, trace"
                    ),
                );
                DatapathLogLevel::Info
            }
        },
    };

    Datapath {
        interfaces,
        xdp_mode,
        pin_dir,
        log_level,
    }
}

#[cfg(test)]
mod tests {
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
            }
        );
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
}
