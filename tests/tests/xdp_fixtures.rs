//! The XDP program, packet by packet, through BPF_PROG_TEST_RUN: each case
//! names itself, programs the maps through the agent's own code, builds
//! its input and expected output with etherparse, and checks the action,
//! the exact output bytes and the counters. No case depends on another:
//! each gets its own namespace and its own program (see xdp/harness.rs).

mod xdp;
