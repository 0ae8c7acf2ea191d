//! Nanoseconds per packet through BPF_PROG_TEST_RUN: halb's tracked-flow
//! (hit) and new-flow paths, next to a trivial `return XDP_TX` program,
//! all timed by the kernel in the same way in the same run.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use halb_common::maps::{DEFAULT_NAT_PORT_MAX, DEFAULT_NAT_PORT_MIN};
use halb_tests::xdp_pass::{XDP_TX, XdpPass};

use crate::{
    harness::{Arms, CLIENT_MAC, LB_MAC, with_fixture},
    pkt::{self, Tcp, ip},
};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Runs `fd` on `data` `repeat` times; returns (action, mean ns per run).
fn test_run(fd: BorrowedFd<'_>, data: &[u8], ctx: &[u8], repeat: u32) -> (u32, u32) {
    let mut out = vec![0u8; data.len() + 256];
    let mut attr = [0u8; 80];
    let put32 =
        |attr: &mut [u8; 80], at: usize, v: u32| attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |attr: &mut [u8; 80], at: usize, v: u64| attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put32(&mut attr, 0, fd.as_raw_fd() as u32);
    put32(&mut attr, 8, data.len() as u32);
    put32(&mut attr, 12, out.len() as u32);
    put64(&mut attr, 16, data.as_ptr() as u64);
    put64(&mut attr, 24, out.as_mut_ptr() as u64);
    put32(&mut attr, 32, repeat);
    if !ctx.is_empty() {
        put32(&mut attr, 40, ctx.len() as u32);
        put64(&mut attr, 48, ctx.as_ptr() as u64);
    }
    // SAFETY: attr is a valid bpf_attr for BPF_PROG_TEST_RUN; the buffers
    // it points to outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let duration = u32::from_ne_bytes(attr[36..40].try_into().expect("4 bytes"));
    (retval, duration)
}

/// Mean of the kernel's per-call durations over `packets`, one run each.
fn mean_single_runs(fd: BorrowedFd<'_>, packets: &[Vec<u8>], ctx: &[u8], expect: u32) -> f64 {
    let mut total = 0u64;
    for p in packets {
        let (action, ns) = test_run(fd, p, ctx, 1);
        assert_eq!(action, expect, "unexpected XDP action");
        total += ns as u64;
    }
    total as f64 / packets.len() as f64
}

/// The median of three measurements: the first run of a loop is often
/// slower (caches, frequency), and one outlier should not decide.
fn median_of_3(mut measure: impl FnMut() -> u32) -> u32 {
    let mut runs = [measure(), measure(), measure()];
    runs.sort_unstable();
    runs[1]
}

fn xdp_md(ifindex: u32, len: usize) -> Vec<u8> {
    [0u32, len as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect()
}

const SERVICES: &str = r#"
[[service]]
name = "nat"
vip = "198.18.0.100"
port = 80
snat_address = "198.18.0.2"
[[service.backend]]
address = "198.18.0.11"
[[service.backend]]
address = "198.18.0.12"
[[service.backend]]
address = "198.18.0.13"

[[service]]
name = "dsr"
vip = "198.18.0.101"
port = 80
mode = "dsr"
[[service.backend]]
address = "198.18.0.11"
[[service.backend]]
address = "198.18.0.12"
[[service.backend]]
address = "198.18.0.13"

[[service]]
name = "dsr-mac"
vip = "198.18.0.102"
port = 80
mode = "dsr"
[[service.backend]]
address = "198.18.0.11"
mac = "02:00:00:00:00:11"
"#;

pub fn run() {
    const REPEAT: u32 = 1_000_000;
    const FLOWS: u16 = 20_000;
    let trivial = XdpPass::returning(XDP_TX);
    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    with_fixture(
        Arms::One,
        (DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX),
        |fx| {
            fx.apply(SERVICES);
            let syn = |vip: &str, sport: u16, flags: Tcp| {
                pkt::tcp(
                    (CLIENT_MAC, LB_MAC),
                    (ip("198.18.0.10"), sport),
                    (ip(vip), 80),
                    flags,
                )
            };
            let ifindex = fx.lan0.ifindex;
            let halb = fx
                .dp
                .program()
                .fd()
                .expect("loaded")
                .as_fd()
                .try_clone_to_owned()
                .expect("dup fd");
            let halb = halb.as_fd();
            let ctx_for = |p: &[u8]| xdp_md(ifindex, p.len());

            // Repeated runs of one packet: only DSR leaves it unchanged, so
            // every repetition takes the same (tracked-flow) path.
            let dsr = syn("198.18.0.101", 1000, Tcp::Ack);
            test_run(halb, &dsr, &ctx_for(&dsr), 1);
            let trivial_repeat = median_of_3(|| test_run(trivial.fd(), &dsr, &[], REPEAT).1);
            let dsr_repeat = median_of_3(|| test_run(halb, &dsr, &ctx_for(&dsr), REPEAT).1);
            rows.push(("trivial XDP_TX (1M repeats)", trivial_repeat as f64, 1.0));
            rows.push((
                "halb DSR, tracked flow (1M repeats)",
                dsr_repeat as f64,
                dsr_repeat as f64 / trivial_repeat.max(1) as f64,
            ));
            // The same with the backend's MAC configured: no route lookup.
            let dsr_mac = syn("198.18.0.102", 1000, Tcp::Ack);
            test_run(halb, &dsr_mac, &ctx_for(&dsr_mac), 1);
            let mac_repeat = median_of_3(|| test_run(halb, &dsr_mac, &ctx_for(&dsr_mac), REPEAT).1);
            rows.push((
                "halb DSR, configured MAC (1M repeats)",
                mac_repeat as f64,
                mac_repeat as f64 / trivial_repeat.max(1) as f64,
            ));

            // One run per call: the same packets again and again (tracked
            // flows), or a new 5-tuple each time (new flows).
            let same_nat: Vec<Vec<u8>> = (0..FLOWS)
                .map(|_| syn("198.18.0.100", 2000, Tcp::Ack))
                .collect();
            let new_nat: Vec<Vec<u8>> = (0..FLOWS)
                .map(|i| syn("198.18.0.100", 10_000 + i, Tcp::Syn))
                .collect();
            let new_dsr: Vec<Vec<u8>> = (0..FLOWS)
                .map(|i| syn("198.18.0.101", 10_000 + i, Tcp::Syn))
                .collect();
            let ctx = ctx_for(&same_nat[0]);
            let trivial_single = mean_single_runs(trivial.fd(), &same_nat, &[], 3);
            test_run(halb, &same_nat[0], &ctx, 1);
            let nat_hit = mean_single_runs(halb, &same_nat, &ctx, 3);
            let nat_new = mean_single_runs(halb, &new_nat, &ctx, 3);
            let dsr_new = mean_single_runs(halb, &new_dsr, &ctx, 3);
            rows.push(("trivial XDP_TX (single runs)", trivial_single, 1.0));
            rows.push((
                "halb full NAT, tracked flow",
                nat_hit,
                nat_hit / trivial_single,
            ));
            rows.push(("halb full NAT, new flow", nat_new, nat_new / trivial_single));
            rows.push(("halb DSR, new flow", dsr_new, dsr_new / trivial_single));
        },
    );
    println!("\ndatapath: cost per packet (BPF_PROG_TEST_RUN, kernel-timed mean)");
    println!("  {:<40} {:>10} {:>10}", "path", "ns/packet", "x trivial");
    for (name, ns, ratio) in rows {
        println!("  {name:<40} {ns:>10.1} {ratio:>10.2}");
    }
}
