//! VRRP, the holo way: `packet` is bytes <-> struct with no I/O, `fsm` is
//! the RFC 9568 state machine as a pure function, `check` the receive
//! rules, `track` what tracking makes of the priority. `io` is the raw
//! socket and `instance` the task that ties them to timers, addresses and
//! announcements; `Routers` runs every configured instance.

pub mod check;
pub mod fsm;
pub mod instance;
pub mod io;
pub mod lease;
pub mod link;
pub mod notify;
pub mod packet;
pub mod routers;
pub mod track;
