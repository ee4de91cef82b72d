//! The API server: the event loop with the socket and shared-memory transports, the built-in
//! memclnt and vpe handlers, and a builder for embedding it with extra plugin modules.
//! Nothing is implemented yet; this crate reserves its place in the workspace.
#![forbid(unsafe_code)]
