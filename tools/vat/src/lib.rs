//! vat, the API test tool: what `vpp_api_test` is to VPP, for our server.
//!
//! vat connects, learns the server's API at run time (the message table from the registration,
//! the schema from `get_api_json`), and turns command lines into messages: a message name and
//! `field value` pairs, parsed with [`vppinfra::unformat`]. Replies, details and events print
//! field by field or as JSON. Built-ins cover the CLI (`exec`), the message table, latency
//! (`ping`), timing (`time`) and pipelined load (`repeat`).
//!
//! - [`api`]: the loaded API ([`api::Api`]): IDs, schema, reply kinds.
//! - [`command`]: the pure parser and encoder of message commands.
//! - [`transport`]: the one connection type ([`transport::Transport`]) and where shared memory
//!   plugs in.
//! - [`session`]: requests, dumps, bursts and events over a connection.
//! - [`runner`]: the built-ins and the printing of results.
//! - [`repl`]: interactive line editing, history and completion.
//! - [`stats`]: latency statistics and the progress line.
//! - [`suggest`]: nearest names for typos.
#![forbid(unsafe_code)]

pub mod api;
pub mod command;
#[cfg(test)]
mod fake;
pub mod repl;
pub mod runner;
pub mod session;
pub mod stats;
pub mod suggest;
pub mod transport;
