//! A two-instruction XDP program (`return XDP_PASS`) for the switch side
//! of every veth pair. A frame an XDP program sends back (XDP_TX) or
//! redirects into a veth is delivered only when the veth's peer runs XDP
//! itself (with GRO alone we saw such frames vanish on this kernel); real
//! NICs have no such rule, so the test LANs give every bridge port this.
//!
//! Loaded with the bpf(2) syscall directly, so the harness needs neither
//! an object file nor the eBPF toolchain; attached by `ip link ... xdpdrv
//! pinned`, then unpinned at once: the attachment holds the program, and
//! both go when the port does.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use crate::netns::{NetNs, run_checked, unique_name};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;
const XDP_PASS: i32 = 2;

/// XDP actions the trivial program may return.
pub const XDP_TX: i32 = 3;

/// The loaded program; its fd closes on drop.
pub struct XdpPass {
    fd: OwnedFd,
}

impl XdpPass {
    /// `return XDP_PASS`.
    pub fn load() -> Self {
        Self::returning(XDP_PASS)
    }

    /// `return action`: with XDP_TX, the cheapest forwarding program
    /// possible, the benchmarks' reference.
    pub fn returning(action: i32) -> Self {
        // r0 = action; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]) | ((action as u64) << 32),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
        attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..57].copy_from_slice(b"halb_pass");
        // SAFETY: attr is a valid bpf_attr for BPF_PROG_LOAD, and the
        // pointers in it outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                attr.as_ptr(),
                attr.len() as u32,
            )
        };
        assert!(
            fd >= 0,
            "load the XDP pass program: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a new fd the kernel just returned, owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Self { fd }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Attaches the program to `ifname` in `ns`, in native mode.
    pub fn attach(&self, ns: &NetNs, ifname: &str) {
        let pin = Path::new("/sys/fs/bpf").join(unique_name("pass"));
        let path = CString::new(pin.to_str().expect("UTF-8 path")).expect("no NUL");
        let mut attr = [0u8; 16];
        attr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
        attr[8..12].copy_from_slice(&(self.fd.as_raw_fd() as u32).to_ne_bytes());
        // SAFETY: a valid bpf_attr for BPF_OBJ_PIN; the path outlives the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, attr.as_ptr(), attr.len() as u32) };
        assert_eq!(
            rc,
            0,
            "pin the XDP pass program: {}",
            std::io::Error::last_os_error()
        );
        let attached = std::panic::catch_unwind(|| {
            // Not `ip -n`: like `ip netns exec`, it remounts /sys and would
            // not see the pin in bpffs.
            run_checked(
                ns.command("ip")
                    .args(["link", "set", "dev", ifname, "xdpdrv", "pinned"])
                    .arg(&pin),
            )
        });
        let _ = std::fs::remove_file(&pin);
        if let Err(panic) = attached {
            std::panic::resume_unwind(panic);
        }
    }
}
