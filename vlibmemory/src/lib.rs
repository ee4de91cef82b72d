//! The shared-memory API transport.
//!
//! - [`config`]: the shape of a channel (rings per direction, queue depths), including VPP's
//!   `sock_init_shm` ring configuration items.
//! - [`channel`]: one client's channel inside a segment, and its two ends: [`channel::Sender`]
//!   (allocate a ring slot, write, enqueue the offset) and [`channel::Receiver`] (dequeue, check
//!   the offset against a private copy of the geometry, copy out, free).
//! - [`server`]: [`server::ShmServer`]: private segments for pivoting socket clients, the named
//!   segment for clients that attach by name, registrations, backlogs, the keepalive scan.
//! - [`client`]: [`client::ShmLink`]: a client's end of one channel.
#![forbid(unsafe_code)]

pub mod channel;
pub mod client;
pub mod config;
pub mod server;
