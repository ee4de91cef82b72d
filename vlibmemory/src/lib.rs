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
//! - [`slot`]: the ownership protocols on single shared words (message buffers, named-channel
//!   claims), loom-checked.
//!
//! Under `--cfg loom` only [`config`] and [`slot`] are built: loom cannot model memory shared
//! between processes, so the loom models check the protocols and the multi-process tests check
//! the shared memory.
#![deny(unsafe_code)]

#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod client;
pub mod config;
#[cfg(not(loom))]
pub mod server;
pub mod slot;
