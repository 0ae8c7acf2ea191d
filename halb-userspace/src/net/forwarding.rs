//! bpf_fib_lookup answers only for interfaces that forward (otherwise
//! BPF_FIB_LKUP_RET_FWD_DISABLED), as a router's would: the agent turns
//! IPv4 and IPv6 forwarding on for the interfaces it attaches to.

use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot enable forwarding on {interface} ({}): {source}", path.display())]
pub struct ForwardingError {
    interface: String,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Sets net.ipv4.conf.IF.forwarding and net.ipv6.conf.IF.forwarding to 1
/// for each interface, logging the ones it changed.
pub fn enable(interfaces: &[String]) -> Result<(), ForwardingError> {
    for interface in interfaces {
        for family in ["ipv4", "ipv6"] {
            let path = PathBuf::from(format!(
                "/proc/sys/net/{family}/conf/{interface}/forwarding"
            ));
            let error = |source| ForwardingError {
                interface: interface.clone(),
                path: path.clone(),
                source,
            };
            let current = std::fs::read_to_string(&path).map_err(error)?;
            if current.trim() != "1" {
                std::fs::write(&path, "1").map_err(error)?;
                tracing::info!(
                    interface,
                    family,
                    "enabled forwarding (needed by bpf_fib_lookup)"
                );
            }
        }
    }
    Ok(())
}
