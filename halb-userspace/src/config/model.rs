//! The config file as written: serde types that mirror the TOML, with spans
//! kept where validation may need to point at a value. Unknown keys are errors.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub datapath: Datapath,
}

/// `[datapath]`: where and how the XDP program runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapath {
    /// Interfaces the XDP program is attached to.
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    /// `native` (driver mode, the default) or `generic` (skb mode).
    #[serde(default)]
    pub xdp_mode: Option<Spanned<String>>,
    /// Folder in bpffs where maps are pinned.
    #[serde(default)]
    pub pin_dir: Option<Spanned<String>>,
    /// Most verbose level of the XDP program's own log lines.
    #[serde(default)]
    pub log_level: Option<Spanned<String>>,
}
