//! The socket API transport.
//!
//! - [`frame`]: VPP's 16-byte framing, a reassembling reader and a batching output buffer.
//!
//! The server side of a connection and the Rust socket client build on these; the pivot from a
//! socket connection to a private shared-memory segment lives here too.
#![deny(unsafe_code)]

pub mod frame;
