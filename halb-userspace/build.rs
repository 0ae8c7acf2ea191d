//! Builds halb-ebpf for the BPF target (nightly, bpf-linker, BTF) and leaves
//! the object in OUT_DIR, where `dataplane::loader` embeds it.
//!
//! `cargo xtask` installs the toolchain this needs; set AYA_BUILD_SKIP=1 to
//! build the agent without it (it then cannot load a datapath).

use anyhow::{Context as _, anyhow};
use cargo_metadata::{MetadataCommand, Package};

fn main() -> anyhow::Result<()> {
    let metadata = MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|Package { name, .. }| name.as_str() == "halb-ebpf")
        .ok_or_else(|| anyhow!("halb-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("halb-ebpf manifest has no parent folder"))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    // aya-build prints AYA_BUILD_SKIP's rerun line and honours it.
    if std::env::var_os("AYA_BUILD_SKIP").is_some() {
        // The loader embeds this file; an empty one makes loading fail with a
        // clear error instead of failing the build.
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        std::fs::write(out.join("halb-xdp"), [])?;
    }
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
