//! Batched reads and writes of array maps (BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_UPDATE_BATCH, Linux 5.6+), which aya does not wrap: a Maglev
//! ring of 65,537 slots is read or partly rewritten in one system call
//! instead of one call per slot.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::MapData;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size
    // given; the pointers in it point into buffers the caller keeps alive
    // and sized for `count` elements.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads `count` u32 values of an array map from index `first` on.
pub fn read_u32s(map: &MapData, first: u32, count: u32) -> io::Result<Vec<u32>> {
    let mut values = vec![0u32; count as usize];
    let mut keys = vec![0u32; count as usize];
    let mut done = 0u32;
    // The kernel starts after the key in in_batch; for index 0, from the start.
    let mut cursor: u32 = first.wrapping_sub(1);
    let mut out_batch: u32 = 0;
    while done < count {
        let mut attr = BatchAttr {
            in_batch: if first == 0 && done == 0 {
                0
            } else {
                &cursor as *const u32 as u64
            },
            out_batch: &mut out_batch as *mut u32 as u64,
            keys: keys[done as usize..].as_mut_ptr() as u64,
            values: values[done as usize..].as_mut_ptr() as u64,
            count: count - done,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        done += attr.count;
        match result {
            Ok(()) => {}
            // The end of the map: fewer entries than asked for.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        if attr.count == 0 {
            break;
        }
        cursor = out_batch;
    }
    if done != count {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {done} of {count} entries"),
        ));
    }
    Ok(values)
}

/// Writes `values[i]` at index `keys[i]` of an array map of u32 values.
pub fn write_u32s(map: &MapData, keys: &[u32], values: &[u32]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0usize;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        done += attr.count as usize;
        result?;
        if attr.count == 0 {
            return Err(io::Error::other("the kernel wrote no entry of the batch"));
        }
    }
    Ok(())
}
