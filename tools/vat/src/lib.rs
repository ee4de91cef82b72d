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
//! - [`transport`]: the one connection type ([`transport::Transport`]): the socket, the socket
//!   then a private shared-memory segment, or the server's named segment.
//! - [`session`]: requests, dumps, bursts and events over a connection.
//! - [`runner`]: the built-ins and the printing of results.
//! - [`repl`]: interactive line editing, history and completion.
//! - [`stats`]: latency statistics and the progress line.
//! - [`suggest`]: nearest names for typos.
//!
//! # Usage
//!
//! ```text
//! vat                                   # interactive: TAB completes messages and fields
//! vat control_ping                      # one command, then exit
//! vat exec show version                 # a CLI command through cli_inband
//! vat sw_thing_add_del name foo count 4 enable
//! vat --json sw_thing_dump              # one JSON object per line
//! vat --exec setup.vat                  # a script; `#` starts a comment
//! printf 'ping count 100\nrepeat 100000 control_ping\n' | vat
//! vat --socket /tmp/vpp/api.sock help sw_thing_add_del
//! vat --pivot ping count 10000          # over a private shared-memory segment
//! vat --shm vpp1 repeat 200000 control_ping   # the segment of `api-server --shm-prefix vpp1`
//! printf 'sock_init_shm size 8m\ncontrol_ping\n' | vat
//! ```
//!
//! Exit status: 0 when every command succeeded; 1 when one failed (a non-zero retval, an
//! unknown message, a parse error, a timeout, a refused pivot); 2 when the server is missing
//! or went away.
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
