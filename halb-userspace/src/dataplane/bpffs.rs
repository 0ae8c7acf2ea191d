//! Makes sure bpffs is mounted where the agent pins its maps.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

/// Where bpffs lives on every distribution halb targets.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// `f_type` of a bpffs mount (linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount bpffs on {path} (mount -t bpf bpf {path}): {source}")]
    Mount {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Mounts bpffs on [`BPFFS_ROOT`] unless it is already there, as bpftool does.
pub fn ensure_mounted() -> Result<(), BpffsError> {
    let root = Path::new(BPFFS_ROOT);
    if is_bpffs(root)? {
        return Ok(());
    }
    let path = CString::new(root.as_os_str().as_bytes()).expect("no NUL in a constant");
    let fstype = c"bpf";
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(BpffsError::Mount {
            path: BPFFS_ROOT.into(),
            source: io::Error::last_os_error(),
        });
    }
    tracing::info!(path = BPFFS_ROOT, "mounted bpffs");
    Ok(())
}

/// Whether `path` is the root of (or inside) a bpffs mount.
pub fn is_bpffs(path: &Path) -> Result<bool, BpffsError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| BpffsError::Stat {
        path: path.display().to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: statfs is plain old data; zeroed is a valid value for it.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(BpffsError::Stat {
            path: path.display().to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}
