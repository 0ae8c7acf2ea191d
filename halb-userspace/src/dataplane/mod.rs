//! The XDP datapath as the agent sees it: the bpffs it pins into, loading
//! and attaching the program, and typed access to its maps.

pub mod batch;
pub mod bpffs;
pub mod clock;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod sync;
pub mod writer;

pub use loader::{DataplaneError, LoadOptions, LoadedDatapath};
