//! The API server: the event loop with the socket and shared-memory transports, the built-in
//! memclnt and vpe handlers, and a builder for embedding it with extra plugin modules.
//!
//! - [`evloop`]: the epoll poller and timers the server loop is made of.
#![forbid(unsafe_code)]

pub mod evloop;
