//! Types shared by the XDP program (`halb-ebpf`) and the agent (`halb-userspace`).
//!
//! Every map key and value is defined here once, `#[repr(C)]`, with explicit
//! padding and a pinned size, so the kernel and userspace can never disagree
//! on a layout.
#![no_std]

pub mod maps;
pub mod stats;
