//! `libvlibclient.so`: the C-ABI client library of the API server, its safe Rust core, and (in
//! `python/`) the Python package that loads it.
//!
//! - [`conn`]: [`conn::Connection`], one registered connection whatever the transport, with
//!   keepalive pings answered in its receive path. The async client builds on it too.
//! - [`handle`]: what a C handle is: a connection plus the background thread that answers pings
//!   while the program is silent, a pull queue, and the receive-callback mode.
//! - [`ffi`]: the `extern "C"` functions declared in `include/vlibclient.h`; the only module
//!   with `unsafe` code.
//!
//! The shared-memory transport is not written yet; its entry points
//! ([`conn::Connection::pivot_to_shm`], [`conn::Connection::attach_shm`], `vlc_pivot_to_shm`,
//! `vlc_attach_shm`) return a "not available yet" error.
#![deny(unsafe_code)]

pub mod conn;
pub mod ffi;
pub mod handle;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
