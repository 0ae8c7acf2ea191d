//! halb's configuration: parse the TOML ([`model`]), then check it
//! ([`validate`]) into a [`ValidatedConfig`] the rest of the agent uses.

pub mod model;
pub mod validate;

use std::{fmt, path::Path, path::PathBuf};

pub use validate::ValidatedConfig;

/// One problem in a config file, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Diagnostics { path, list: diagnostics })]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The problems found, each with its position (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

struct Diagnostics<'a> {
    path: &'a Path,
    list: &'a [Diagnostic],
}

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message
            )?;
        }
        Ok(())
    }
}

/// Reads, parses and validates the config at `path`.
pub fn load(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_str(&text).map_err(|diagnostics| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics,
    })
}

/// Parses and validates config text; every problem found is returned.
pub fn from_str(text: &str) -> Result<ValidatedConfig, Vec<Diagnostic>> {
    let positions = Positions::new(text);
    let raw: model::Config = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        vec![positions.diagnostic(offset, e.message().trim_end().to_owned())]
    })?;
    validate::validate(raw, &positions)
}

/// Turns byte offsets in the config text into 1-based line and column.
pub struct Positions<'a> {
    text: &'a str,
}

impl<'a> Positions<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text }
    }

    pub fn diagnostic(&self, offset: usize, message: String) -> Diagnostic {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Diagnostic {
            line,
            column,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every shipped example must stay valid.
    #[test]
    fn examples_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                super::load(&path).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked > 0, "no example config in {}", dir.display());
    }
}
