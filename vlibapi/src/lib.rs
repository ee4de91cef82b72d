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
