//! VRRP, the holo way: `packet` is bytes <-> struct with no I/O, `fsm` is
//! the RFC 9568 state machine as a pure function. Sockets, timers and
//! addresses (io, instance, tasks) come with the high-availability issue.

pub mod fsm;
pub mod packet;
