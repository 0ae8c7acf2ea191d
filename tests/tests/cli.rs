//! The `halb` binary's commands that need no network: config checking.

use std::process::Command;

use halb_tests::agent::halb_bin;

fn check(config: &str) -> (bool, String, String) {
    let path = std::env::temp_dir().join(format!(
        "halb-cli-{}-{}.toml",
        std::process::id(),
        config.len()
    ));
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(halb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run halb check");
    let _ = std::fs::remove_file(&path);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_good_config() {
    let (ok, stdout, _) = check("[datapath]\ninterfaces = [\"eth0\"]\n");
    assert!(ok);
    assert!(stdout.ends_with(": ok\n"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_file_line_column() {
    let (ok, _, stderr) =
        check("[datapath]\ninterfaces = [\"eth0\", \"eth0\"]\nxdp_mode = \"fast\"\n");
    assert!(!ok);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains(".toml:2:23: interface \"eth0\" is listed twice"),
        "{stderr}"
    );
    assert!(
        lines[1].contains(".toml:3:12: xdp_mode \"fast\" is not known"),
        "{stderr}"
    );
}

/// A namespace for `halb run`, and a config in a temporary file with a
/// pin folder and control socket of its own; `datapath` is the
/// `[datapath]` table's body, without `pin_dir`.
struct RunSetup {
    ns: halb_tests::netns::NetNs,
    pin_dir: std::path::PathBuf,
    socket: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl RunSetup {
    fn new(role: &str, datapath: &str) -> Self {
        let ns = halb_tests::netns::NetNs::new(role);
        let name = halb_tests::netns::unique_name(role);
        let pin_dir = std::path::Path::new("/sys/fs/bpf").join(&name);
        let socket = std::env::temp_dir().join(format!("{name}.sock"));
        let config = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[datapath]\n{datapath}pin_dir = \"{}\"\n[admin]\ncontrol_socket = \"{}\"\n",
                pin_dir.display(),
                socket.display()
            ),
        )
        .expect("write config");
        Self {
            ns,
            pin_dir,
            socket,
            config,
        }
    }

    /// `halb ARGS --config <this config>` in the namespace.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.ns.command(halb_bin().to_str().expect("UTF-8"));
        command.args(args).arg("--config").arg(&self.config);
        command
    }
}

impl Drop for RunSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

#[test]
fn run_logs_json_lines_when_asked() {
    use std::time::Duration;

    use halb_tests::process::ChildGuard;

    let setup = RunSetup::new("json", "interfaces = [\"lo\"]\nxdp_mode = \"generic\"\n");
    let command = setup.command(&["run", "--log-format", "json"]);
    let mut agent = ChildGuard::spawn("halb-json", command, false);
    let line = agent
        .lines()
        .wait_for("datapath attached", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no attach line: {:?}", agent.lines().snapshot()));
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["level"], "INFO", "{json}");
    assert_eq!(json["fields"]["message"], "datapath attached", "{json}");
    assert!(agent.stop(Duration::from_secs(5)).success());
    let pin_dir = &setup.pin_dir;
    assert!(!pin_dir.exists(), "{} left pinned", pin_dir.display());
}

#[test]
fn a_failed_start_leaves_no_datapath_behind() {
    // No interface nope0 here: loading works, attaching fails.
    let setup = RunSetup::new("failstart", "interfaces = [\"nope0\"]\n");
    let out = setup.command(&["run"]).output().expect("run halb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("nope0"), "{stderr}");
    assert!(
        !setup.pin_dir.exists(),
        "{} left pinned: {stderr}",
        setup.pin_dir.display()
    );
    assert!(!setup.socket.exists());
}
