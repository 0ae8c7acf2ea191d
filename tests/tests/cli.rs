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
