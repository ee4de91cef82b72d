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
//! # Shared memory
//!
//! Not plugged in yet: every entry point ([`conn::Connection::pivot_to_shm`],
//! [`conn::Connection::attach_shm`], `vlc_pivot_to_shm`, `vlc_attach_shm`, Python's
//! `Connection(..., shm=True)` and `Connection.attach_shm`, the async client's
//! `Transport::ShmPivot` / `Transport::ShmByName`) returns a "not available yet" error and
//! changes nothing. All I/O goes through the private `Tx`/`Rx` enums of [`conn`], so plugging
//! vlibmemory's client in touches that module only:
//!
//! 1. vlibmemory's `ShmLink` is one object whose `send` and `recv` both take `&mut self`; the
//!    connection needs a send half and a receive half usable from two threads at once (one
//!    thread waits for messages while others send), e.g. `ShmLink::split(self) ->
//!    (ShmSender, ShmReceiver)`, each holding the segment's `Arc`.
//! 2. `Tx::Shm(ShmSender)`: `queue` sends at once, `flush` has nothing to do, `send_framed`
//!    sends the bytes after the frame header. `Rx::Shm(ShmReceiver)` in `Rx::next`: receive in
//!    slices of at most 100 ms until the deadline, returning `Ok(None)` when `wake` is
//!    readable (or an interrupt flag is set), and, while a socket is kept for liveness,
//!    turning its EOF into `RecvError::ServerGone`. Keepalive answering needs nothing: it is
//!    in [`conn::RxGuard::recv_with`], above the transport.
//! 3. [`conn::Connection::pivot_to_shm`]: interrupt, lock `rx` then `tx`, send
//!    `sock_init_shm`, read its reply through the frame reader (and nothing more), receive the
//!    memfd and doorbell with `vppinfra::socket::recv_with_fds`, `ShmLink::from_pivot`,
//!    register with `memclnt_create_v2 { keepalive: true }` over the segment, and swap both
//!    halves. The client index changes, so `Connection::index` must become mutable (an
//!    atomic). [`conn::Connection::attach_shm`]: `ShmLink::attach_named(prefix, ..)`, the table
//!    from `published_table()`, the same registration, no socket.
#![deny(unsafe_code)]

pub mod conn;
pub mod ffi;
pub mod handle;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
