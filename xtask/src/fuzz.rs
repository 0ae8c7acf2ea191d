//! `cargo xtask fuzz NAME --seconds N`: runs one cargo-fuzz target of
//! fuzz/ (nightly, address sanitizer) from its seeds, then prints one line:
//! executions, exec/s, corpus size, and the crash if there was one.
//!
//! The working corpus (fuzz/corpus/NAME) and crash artifacts
//! (fuzz/artifacts/NAME) are git-ignored; the seeds (fuzz/seeds/NAME) and
//! dictionaries (fuzz/dicts/NAME.dict) are kept in the repo.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd,
    console::{say, show},
    toolchain::NIGHTLY,
};

/// The fuzz targets there are (fuzz/fuzz_targets/NAME.rs), with what each feeds.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "config",
        "config text through config::from_str (parse and validate); seeds: examples/ and fuzz/seeds/config",
    ),
    (
        "vrrp_advert",
        "VRRPv2/v3 adverts over IPv4/IPv6 through vrrp::packet::decode and the receive checks",
    ),
    (
        "garp",
        "addresses and MACs through net::garp::frames, the frames read back with etherparse",
    ),
    (
        "http_route",
        "HTTP requests through proxy::route::Routes::pick against fixed rule sets",
    ),
    (
        "http_rules",
        "[[service.http.rule]] tables through config::from_str, then the router",
    ),
];

/// Seconds one input may take before libFuzzer calls it a hang.
const INPUT_TIMEOUT_SECONDS: u32 = 20;

pub fn list() {
    for (name, what) in TARGETS {
        show!("{name:12} {what}");
    }
}

pub fn run(name: &str, seconds: u32) -> Result<()> {
    if !TARGETS.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        bail!(
            "no fuzz target {name:?}; there are: {} (`cargo xtask fuzz --list` says what each does)",
            known.join(", ")
        );
    }
    ensure_cargo_fuzz()?;
    let root = root();
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(name);
    std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;

    let mut command = Command::new("cargo");
    command
        .arg(format!("+{NIGHTLY}"))
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .arg(name)
        // libFuzzer adds new inputs to the first folder only.
        .arg(&corpus)
        .arg(fuzz_dir.join("seeds").join(name));
    if name == "config" {
        command.arg(root.join("examples"));
    }
    command.arg("--").args([
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
        "-print_final_stats=1".to_owned(),
    ]);
    let dict = fuzz_dir.join("dicts").join(format!("{name}.dict"));
    if dict.exists() {
        command.arg(format!("-dict={}", dict.display()));
    }
    // The targets load no datapath: skip building the XDP program.
    command
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(&root)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    say!("xtask: {}", cmd::describe(&command));

    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", cmd::describe(&command)))?;
    let mut report = Report::default();
    let stderr = child.stderr.take().context("libFuzzer's stderr")?;
    for line in BufReader::new(stderr).split(b'\n') {
        let line = String::from_utf8_lossy(&line.context("read libFuzzer's output")?).into_owned();
        say!("{line}");
        report.observe(&line);
    }
    let status = child.wait().context("wait for cargo fuzz")?;

    show!("xtask: fuzz {name}: {}", report.summary());
    if let Some(artifact) = &report.artifact {
        bail!(
            "{name} crashed; reproduce with: cargo +{NIGHTLY} fuzz run --fuzz-dir fuzz {name} {artifact}"
        );
    }
    if !status.success() {
        bail!("cargo fuzz run {name} failed ({status}) without leaving a crash input");
    }
    Ok(())
}

/// The repository root (xtask's parent folder).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_owned()
}

fn ensure_cargo_fuzz() -> Result<()> {
    if cmd::output(Command::new("cargo").args(["fuzz", "--version"])).is_ok() {
        return Ok(());
    }
    say!("xtask: installing cargo-fuzz (cargo install, once)");
    cmd::run(
        Command::new("cargo")
            .args(["install", "cargo-fuzz"])
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("could not install cargo-fuzz; fix: cargo install cargo-fuzz")
}

/// What a libFuzzer run printed, as far as the summary needs it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    seconds: Option<u64>,
    corpus_inputs: Option<u64>,
    corpus_bytes: Option<u64>,
    /// libFuzzer's name for what went wrong ("deadly signal", "timeout", ...).
    failure: Option<String>,
    /// Where libFuzzer wrote the input that failed.
    artifact: Option<String>,
}

impl Report {
    fn observe(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.exec_per_sec = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123456 runs in 121 second(s)"
            let mut words = rest.split_whitespace();
            if let (Some(runs), Some("runs"), Some("in"), Some(secs)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                self.executions = self.executions.or(runs.parse().ok());
                self.seconds = secs.parse().ok();
            }
        } else if let Some(rest) = line.split("Test unit written to ").nth(1) {
            self.artifact = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("SUMMARY: libFuzzer: ") {
            self.failure = Some(rest.trim().to_owned());
        } else if line.starts_with('#') {
            // "#5000 NEW cov: 2010 ft: 5050 corp: 101/20100b lim: ..."; the
            // last status line has the final corpus.
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                if word == "corp:"
                    && let Some((inputs, bytes)) = words.next().and_then(|c| c.split_once('/'))
                {
                    self.corpus_inputs = inputs.parse().ok();
                    self.corpus_bytes = parse_size(bytes);
                }
            }
        }
    }

    /// "1234567 executions in 120 s, 10288 exec/s, corpus 456 inputs (78 KiB), no crash"
    fn summary(&self) -> String {
        let or_unknown = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        let seconds = self.seconds.map_or(String::new(), |s| format!(" in {s} s"));
        let corpus_bytes = self
            .corpus_bytes
            .map_or(String::new(), |b| format!(" ({})", human_bytes(b)));
        let outcome = match (&self.artifact, &self.failure) {
            (Some(artifact), failure) => format!(
                "CRASH ({}): {artifact}",
                failure.as_deref().unwrap_or("failure")
            ),
            (None, Some(failure)) => format!("CRASH ({failure}), no input written"),
            (None, None) => "no crash".to_owned(),
        };
        format!(
            "{} executions{seconds}, {} exec/s, corpus {} inputs{corpus_bytes}, {outcome}",
            or_unknown(self.executions),
            or_unknown(self.exec_per_sec),
            or_unknown(self.corpus_inputs),
        )
    }
}

/// libFuzzer's sizes: "20100b", "1024Kb", "3Mb".
fn parse_size(text: &str) -> Option<u64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("Mb") {
        (n, 1 << 20)
    } else if let Some(n) = text.strip_suffix("Kb") {
        (n, 1 << 10)
    } else {
        (text.strip_suffix('b')?, 1)
    };
    number.parse::<u64>().ok().map(|n| n * scale)
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 10 << 20 => format!("{} MiB", b >> 20),
        b if b >= 10 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(output: &str) -> Report {
        let mut report = Report::default();
        for line in output.lines() {
            report.observe(line);
        }
        report
    }

    #[test]
    fn a_clean_run_gives_executions_speed_and_corpus() {
        let r = report(
            "INFO: seed corpus: files: 12 min: 1b max: 912b total: 3000b rss: 40Mb\n\
             #13\tINITED cov: 1904 ft: 3202 corp: 11/2795b exec/s: 0 rss: 61Mb\n\
             #262144\tpulse  cov: 2210 ft: 4410 corp: 180/19Kb lim: 4096 exec/s: 8738 rss: 402Mb\n\
             #1118481\tDONE   cov: 2231 ft: 4522 corp: 197/21Kb lim: 4096 exec/s: 9243 rss: 420Mb\n\
             Done 1118481 runs in 121 second(s)\n\
             stat::number_of_executed_units: 1118481\n\
             stat::average_exec_per_sec:     9243\n\
             stat::new_units_added:          310\n",
        );
        assert_eq!(
            r,
            Report {
                executions: Some(1_118_481),
                exec_per_sec: Some(9243),
                seconds: Some(121),
                corpus_inputs: Some(197),
                corpus_bytes: Some(21 << 10),
                failure: None,
                artifact: None,
            }
        );
        assert_eq!(
            r.summary(),
            "1118481 executions in 121 s, 9243 exec/s, corpus 197 inputs (21 KiB), no crash"
        );
    }

    #[test]
    fn a_crash_names_its_input() {
        let r = report(
            "#4096\tpulse  cov: 900 ft: 1000 corp: 40/1200b lim: 43 exec/s: 2048 rss: 50Mb\n\
             ==4242== ERROR: libFuzzer: deadly signal\n\
             SUMMARY: libFuzzer: deadly signal\n\
             MS: 2 ChangeByte-InsertRepeatedBytes-; base unit: 0123\n\
             artifact_prefix='/work/main/fuzz/artifacts/config/'; Test unit written to /work/main/fuzz/artifacts/config/crash-9f2c\n\
             stat::number_of_executed_units: 4100\n\
             stat::average_exec_per_sec:     2050\n",
        );
        assert_eq!(
            r.artifact.as_deref(),
            Some("/work/main/fuzz/artifacts/config/crash-9f2c")
        );
        assert_eq!(
            r.summary(),
            "4100 executions, 2050 exec/s, corpus 40 inputs (1200 B), CRASH (deadly signal): /work/main/fuzz/artifacts/config/crash-9f2c"
        );
    }

    #[test]
    fn a_build_failure_reports_nothing_it_did_not_see() {
        let r = report("error[E0425]: cannot find value `x` in this scope\n");
        assert_eq!(r, Report::default());
        assert_eq!(
            r.summary(),
            "? executions, ? exec/s, corpus ? inputs, no crash"
        );
    }

    #[test]
    fn sizes_in_libfuzzer_units() {
        assert_eq!(parse_size("2795b"), Some(2795));
        assert_eq!(parse_size("19Kb"), Some(19 << 10));
        assert_eq!(parse_size("3Mb"), Some(3 << 20));
        assert_eq!(parse_size("3"), None);
    }

    /// TARGETS names exactly the files in fuzz/fuzz_targets.
    #[test]
    fn every_fuzz_target_is_listed() {
        let dir = root().join("fuzz").join("fuzz_targets");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, files);
    }
}
