pub mod harness;
pub mod pkt;
