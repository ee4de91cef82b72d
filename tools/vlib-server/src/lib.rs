//! The API server: one event loop over the socket transport (and, through its hooks, other
//! event sources), the built-in memclnt and vpe handlers, a debug CLI, and a builder for
//! embedding it with extra plugin modules.
//!
//! - [`server`]: [`server::Server`], [`server::ServerBuilder`], the [`server::Plugin`] trait.
//! - [`cli`]: the command registry behind `cli_inband`.
//! - [`evloop`]: the epoll poller and timers the loop is made of.
//! - [`log`]: the server's log lines.
//! - [`source`]: plugins' own event sources (fds watched by the loop).
//! - `shm` (private): the pivot, shared-memory channels, keepalive and reaping.
//!
//! ```no_run
//! let mut server = vlib_server::server::Server::builder()
//!     .socket_path("/tmp/example/api.sock")
//!     .build()?;
//! let stop = server.shutdown_handle();
//! std::thread::spawn(move || { std::thread::sleep(std::time::Duration::from_secs(1)); stop.shutdown() });
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod cli;
pub mod evloop;
pub mod log;
pub mod server;
mod shm;
pub mod source;
