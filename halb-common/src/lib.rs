//! Types shared by the XDP program (`halb-ebpf`) and the agent (`halb-userspace`).
//!
//! Every map key and value is defined here once, `#[repr(C)]`, with explicit
//! padding and a pinned size, so the kernel and userspace can never disagree
//! on a layout. Fields holding network-order values end in `_be`.
#![no_std]

pub mod addr;
pub mod backend;
pub mod event;
pub mod flow;
pub mod hash;
pub mod interface;
pub mod maps;
pub mod service;
pub mod stats;
