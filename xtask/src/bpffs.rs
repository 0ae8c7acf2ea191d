//! bpffs on /sys/fs/bpf. halb mounts it when missing, but the harness pins
//! its XDP pass program there while it builds a LAN, before any halb runs;
//! a machine without systemd (a container, a minimal VM) has none mounted.

use std::ffi::CString;

use anyhow::{Context as _, Result};
use halb_tests::agent::BPFFS;

use crate::{cmd, console::say, privilege};

/// `statfs(2)`'s f_type for bpffs (linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// Mounts bpffs on /sys/fs/bpf unless it is there, as root (through sudo
/// when needed).
pub fn ensure() -> Result<()> {
    if mounted() {
        return Ok(());
    }
    say!("xtask: mounting bpffs on {BPFFS}");
    cmd::run(privilege::command("mount").args(["-t", "bpf", "bpf", BPFFS])).with_context(|| {
        format!("bpffs is not mounted on {BPFFS} and xtask could not mount it: run `mount -t bpf bpf {BPFFS}` as root and run this again")
    })
}

fn mounted() -> bool {
    let Ok(path) = CString::new(BPFFS) else {
        return false;
    };
    // SAFETY: statfs fills the struct we pass; the path is NUL-terminated.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &raw mut fs) == 0 && fs.f_type as u32 == BPF_FS_MAGIC
    }
}
