//! `libvlibclient.so`: the C-ABI client library of the API server, its safe Rust core, and (in
//! `python/`) the Python package that loads it.
//!
//! - [`conn`]: [`conn::Connection`], one registered connection whatever the transport, with
//!   keepalive pings answered in its receive path. The async client builds on it too.
//! - [`handle`]: what a C handle is: a connection plus the background thread that answers pings
//!   while the program is silent, a pull queue, and the receive-callback mode.
//! - [`ffi`]: the `extern "C"` functions declared in `include/vlibclient.h`; the only module
//!   with `unsafe` code.
//! - `liveness` (private): how a connection without a socket sees the server go, and why its
//!   sends may block `SIGPIPE`.
//!
//! # Shared memory
//!
//! Every entry point works over vlibmemory's client: [`conn::Connection::pivot_to_shm`] and
//! [`conn::Connection::attach_shm`], `vlc_pivot_to_shm` and `vlc_attach_shm`, Python's
//! `Connection(..., shm=True)`, `pivot_to_shm` and `Connection.attach_shm(name, prefix=...)`,
//! and the async client's `Transport::ShmPivot` and `Transport::ShmByName`. The protocol is
//! `vlibsocket::client`'s (`sock_init_shm`, the fds after the reply, `memclnt_create_v2` with
//! keepalive on, `memclnt_delete` then `sockclnt_delete` to leave). The link is split into a
//! send half and a receive half ([`vlibmemory::client::ShmLink::split`]), the two halves of a
//! [`conn::Connection`], so one thread may wait while others send; keepalive pings are
//! answered in the receive path, above the transport.
//!
//! The server's death surfaces as `ServerGone` (`VLC_E_DISCONNECTED`, `Disconnected`) within
//! one 20 ms wait slice: after a pivot by the socket's EOF, attached by name by the doorbell
//! FIFO losing its reader. Request timeouts (the C and Python read timeouts, the async
//! client's `request_timeout`) do not depend on either.
#![deny(unsafe_code)]

pub mod conn;
pub mod ffi;
pub mod handle;
mod liveness;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
