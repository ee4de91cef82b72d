//! The socket API transport.
//!
//! - [`frame`]: VPP's 16-byte framing, a reassembling reader and a batching output buffer.
//! - [`server`]: the listener and its connections, driven by the server's event loop.
//! - [`client`]: the synchronous Rust client (request/reply, dumps, events, pipelining).
//!
//! The server side of a connection and the Rust socket client build on these; the pivot from a
//! socket connection to a private shared-memory segment lives here too.
#![deny(unsafe_code)]

pub mod client;
pub mod frame;
pub mod server;
