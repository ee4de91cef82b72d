//! The transport-agnostic API message layer.
//!
//! Messages are defined once, in VPP's `.api.json` format, and everything else derives from that
//! one source. vlibapi does no I/O and contains no unsafe code.
//!
//! - [`json`]: a small JSON reader and writer (no serde in core crates).
//! - [`schema`]: the model of an API module, read from and written to `.api.json`.
//! - [`codegen`]: the build-time generator of typed messages (run by our `build.rs` and by
//!   plugins' build scripts).
//! - [`wire`]: the [`Message`] trait and the static codec's runtime.
//! - [`msgs`]: the generated memclnt, memfd, vpe and vlib_api messages.
//! - [`value`]: the dynamic codec: any message to and from a [`value::Value`] tree by schema.
//! - [`table`]: the message table (IDs per module, name_crc lookups, `get_api_json`).
//! - [`dispatch`]: handler registration and dispatch by ID, with validation and counters.
//! - [`trace`]: per-direction rings of recent messages, save and replay.
//! - [`pretty`]: pretty-printing of messages and values.
//!
//! # Example: a server's dispatch loop in miniature
//!
//! ```
//! use vlibapi::msgs::{memclnt, vpe};
//! use vlibapi::{ApiBuilder, ApiError, ClientIndex, Message, Outbox, SendError};
//!
//! /// What a transport provides: a way to reach clients.
//! struct Replies(Vec<(ClientIndex, Vec<u8>)>);
//! impl Outbox for Replies {
//!     fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
//!         self.0.push((to, msg.to_vec()));
//!         Ok(())
//!     }
//!     fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
//!         f(ClientIndex(0x8000_0000));
//!     }
//! }
//!
//! let mut api = ApiBuilder::new(); // memclnt (IDs 1-28), memfd, vpe, vlib_api
//! api.add_memclnt_handlers(std::process::id())?; // control_ping, get_api_json, ...
//! api.handle(|_ctx, req: vpe::CliInband| match req.cmd.as_str() {
//!     "show version" => Ok(vpe::CliInbandReply { reply: "vpp-rs 0.1".into(), ..Default::default() }),
//!     _ => Err(ApiError::Unspecified), // becomes retval -1, context still echoed
//! })?;
//! let mut dispatcher = api.build();
//!
//! let client = ClientIndex(0x8000_0000);
//! let id = dispatcher.table().id_of::<memclnt::ControlPing>().unwrap();
//! let ping = vlibapi::wire::to_vec(&memclnt::ControlPing { client_index: client.0, context: 7 }, id)?;
//! let mut out = Replies(Vec::new());
//! dispatcher.dispatch(client, &ping, &mut out)?;
//! let reply = memclnt::ControlPingReply::decode(&out.0[0].1)?;
//! assert_eq!(reply.context, 7);
//! assert_eq!(
//!     dispatcher.format(&out.0[0].1),
//!     format!("control_ping_reply {{ context: 7, retval: 0, client_index: {}, vpe_pid: {} }}",
//!             client.0, std::process::id()),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

// Generated code names this crate `::vlibapi`, in plugins and here alike.
extern crate self as vlibapi;

pub mod codegen;
pub mod dispatch;
pub mod json;
pub mod msgs;
pub mod pretty;
pub mod schema;
pub mod table;
pub mod trace;
pub mod value;
pub mod wire;

pub use dispatch::{
    ApiBuilder, ApiError, ClientIndex, Ctx, DispatchError, Dispatcher, Outbox, SendError,
};
pub use table::MessageTable;
pub use wire::{DecodeError, EncodeError, Message, MessageVisitor, Wire};
