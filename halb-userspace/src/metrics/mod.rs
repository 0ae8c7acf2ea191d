//! Prometheus metrics on `[admin] metrics`: the page (render) and the HTTP
//! server that answers for it in tasks of its own (server).

pub mod render;
pub mod server;

pub use render::render;
pub use server::{MetricsServer, PageRequest};
