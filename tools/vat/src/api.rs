//! The server's API as vat sees it: the message table from `sockclnt_create_reply` joined with
//! the schema from `get_api_json`.
//!
//! [`Api::load`] parses the `get_api_json` documents with vlibapi's JSON reader into a
//! [`Schema`], and indexes every message the server has an ID for: by ID (to decode what
//! arrives), by name (to encode commands), with the offsets of `client_index` and `context` and
//! what kind of answer a request gets ([`ReplyKind`], from the modules' `services`).
//!
//! `get_api_json` does not carry our `host_order` overlay (it writes VPP's format), so the flags
//! are restored from vlibapi's own copy of the core modules for every message whose `name_crc`
//! matches one of them: those few memclnt and memfd fields then encode as the server expects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use vlibapi::json::{self, Json};
use vlibapi::schema::{self, MessageDef, Module, Schema, SchemaLoadError, Service, Version};
use vlibapi::value::{self, Value};
use vlibapi::{DecodeError, MessageTable};

/// How a request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// Nothing comes back (`"reply": "null"`, or not a request at all).
    None,
    /// One reply message.
    Single {
        /// The reply's name.
        reply: String,
    },
    /// A dump: details until the `control_ping_reply` of the trailing `control_ping`.
    Dump {
        /// The details' name.
        details: String,
    },
    /// A `_get` style stream: details, then one closing reply (no control_ping).
    StreamThenReply {
        /// The details' name.
        details: String,
        /// The closing reply's name.
        reply: String,
    },
}

/// One message the server has an ID for and describes.
#[derive(Debug, Clone)]
pub struct MsgInfo {
    /// Its ID in the server's table.
    pub id: u16,
    /// `name_crc8hex`.
    pub name_crc: String,
    /// Its definition.
    pub def: MessageDef,
    /// The module that defines it.
    pub module: String,
    /// Offset of `client_index` (a request field vat fills in).
    pub client_index_offset: Option<usize>,
    /// Offset of `context`.
    pub context_offset: Option<usize>,
    /// How it is answered when sent as a request.
    pub reply: ReplyKind,
    /// It is itself an answer (a reply, details or an event of some service, or named like
    /// one), so not something a person usually sends.
    pub is_answer: bool,
}

impl MsgInfo {
    /// The message's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// True if the message has a field called `name`.
    pub fn has_field(&self, name: &str) -> bool {
        self.def.fields.iter().any(|f| f.name == name)
    }
}

/// One module's summary (from `api_versions` and the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSummary {
    /// The module's name.
    pub name: String,
    /// Its version.
    pub version: Version,
}

/// Why the server's API could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiLoadError {
    /// `get_api_json` did not return JSON.
    Json(json::JsonParseError),
    /// The JSON is not a list of documents.
    NotAList,
    /// A document is not a valid API module.
    Schema {
        /// Which document (0-based).
        index: usize,
        /// Why.
        error: SchemaLoadError,
    },
}

impl fmt::Display for ApiLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "get_api_json did not return JSON: {e}"),
            Self::NotAList => f.write_str("get_api_json did not return a list of documents"),
            Self::Schema { index, error } => write!(f, "api document {index} is invalid: {error}"),
        }
    }
}

impl std::error::Error for ApiLoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            Self::Schema { error, .. } => Some(error),
            Self::NotAList => None,
        }
    }
}

/// A message decoded from the wire.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// What it is.
    pub info: &'a MsgInfo,
    /// Its fields.
    pub value: Value,
}

impl Decoded<'_> {
    /// Its `retval`, if it has one.
    pub fn retval(&self) -> Option<i32> {
        self.value
            .get("retval")
            .and_then(Value::as_i128)
            .and_then(|r| i32::try_from(r).ok())
    }

    /// Its `context`, if it has one.
    pub fn context(&self) -> Option<u32> {
        self.value
            .get("context")
            .and_then(Value::as_i128)
            .and_then(|c| u32::try_from(c).ok())
    }
}

/// Why received bytes could not be decoded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageDecodeError {
    /// Shorter than a message ID.
    NoId,
    /// The ID is not in the table, or the schema does not describe it.
    UnknownId(u16),
    /// The bytes do not match the schema.
    Bad {
        /// The message's name.
        name: String,
        /// Why.
        error: DecodeError,
    },
}

impl fmt::Display for MessageDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoId => f.write_str("a message too short to carry an id"),
            Self::UnknownId(id) => write!(f, "a message with unknown id {id}"),
            Self::Bad { name, error } => write!(f, "an undecodable {name}: {error}"),
        }
    }
}

impl std::error::Error for MessageDecodeError {}

/// The loaded API.
#[derive(Debug)]
pub struct Api {
    schema: Schema,
    msgs: Vec<MsgInfo>,
    by_id: HashMap<u16, usize>,
    by_name: BTreeMap<String, usize>,
    /// The whole table, described or not: ID to `name_crc`.
    table: BTreeMap<u16, String>,
    modules: Vec<ModuleSummary>,
}

impl Api {
    /// Joins the server's message table (`(id, name_crc)`) with its `get_api_json` text.
    /// `modules` names the documents, in order (from `api_versions`); documents beyond it are
    /// called `module{i}`.
    pub fn load(
        table: impl IntoIterator<Item = (u16, String)>,
        api_json: &str,
        modules: &[ModuleSummary],
    ) -> Result<Api, ApiLoadError> {
        let doc = json::parse(api_json).map_err(ApiLoadError::Json)?;
        let docs = doc.as_array().ok_or(ApiLoadError::NotAList)?;
        let builtin = MessageTable::with_core();
        let mut schema = Schema::new();
        let mut module_names = Vec::new();
        for (index, d) in docs.iter().enumerate() {
            // VPP's documents name themselves (`"module": "flow"`); ours are named by
            // `api_versions`, in the same order.
            let name = d
                .get("module")
                .and_then(Json::as_str)
                .map(str::to_owned)
                .or_else(|| modules.get(index).map(|m| m.name.clone()))
                .unwrap_or_else(|| format!("module{index}"));
            let mut m = Module::from_json(&name, d)
                .map_err(|error| ApiLoadError::Schema { index, error })?;
            restore_host_order(&mut m, builtin.schema());
            module_names.push(name);
            schema.push(m);
        }
        // VPP's `get_api_json` leaves memclnt out (its clients compile it in): so do we.
        if schema.message("control_ping").is_none() {
            if let Some(m) = builtin
                .schema()
                .modules()
                .iter()
                .find(|m| m.name == "memclnt")
            {
                schema.push(m.clone());
            }
        }
        Ok(Self::index(schema, table.into_iter().collect(), modules))
    }

    fn index(schema: Schema, table: BTreeMap<u16, String>, modules: &[ModuleSummary]) -> Api {
        let mut services: HashMap<&str, &Service> = HashMap::new();
        let mut answers: HashSet<&str> = HashSet::new();
        let mut module_of: HashMap<&str, &str> = HashMap::new();
        let mut summaries = Vec::new();
        for (i, m) in schema.modules().iter().enumerate() {
            for s in &m.services {
                services.entry(s.request.as_str()).or_insert(s);
                answers.insert(s.reply.as_str());
                answers.extend(s.stream_msg.as_deref());
                answers.extend(s.events.iter().map(String::as_str));
            }
            for msg in &m.messages {
                module_of
                    .entry(msg.name.as_str())
                    .or_insert(m.name.as_str());
            }
            summaries.push(ModuleSummary {
                name: m.name.clone(),
                version: modules.get(i).map_or(m.version, |s| s.version),
            });
        }
        let known = |name: &str| schema.message(name).is_some();
        let mut msgs = Vec::new();
        for (&id, name_crc) in &table {
            let Some(def) = schema.message_by_name_crc(name_crc) else {
                continue;
            };
            let reply = reply_kind(&def.name, services.get(def.name.as_str()).copied(), known);
            let is_answer = answers.contains(def.name.as_str())
                || def.name.ends_with("_reply")
                || def.name.ends_with("_details");
            msgs.push(MsgInfo {
                id,
                name_crc: name_crc.clone(),
                module: module_of
                    .get(def.name.as_str())
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
                client_index_offset: schema::field_offset(&schema, def, "client_index"),
                context_offset: schema::field_offset(&schema, def, "context"),
                reply,
                is_answer,
                def: def.clone(),
            });
        }
        let by_id = msgs.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        let mut by_name = BTreeMap::new();
        for (i, m) in msgs.iter().enumerate() {
            by_name.entry(m.def.name.clone()).or_insert(i);
        }
        Api {
            schema,
            msgs,
            by_id,
            by_name,
            table,
            modules: summaries,
        }
    }

    /// The schema, for the dynamic codec and pretty-printing.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// A message by name.
    pub fn by_name(&self, name: &str) -> Option<&MsgInfo> {
        self.by_name.get(name).map(|&i| &self.msgs[i])
    }

    /// A message by ID.
    pub fn by_id(&self, id: u16) -> Option<&MsgInfo> {
        self.by_id.get(&id).map(|&i| &self.msgs[i])
    }

    /// Every sendable message, by name.
    pub fn messages(&self) -> impl Iterator<Item = &MsgInfo> + '_ {
        self.by_name.values().map(|&i| &self.msgs[i])
    }

    /// The server's whole table in ID order, including messages the schema does not describe.
    pub fn table(&self) -> &BTreeMap<u16, String> {
        &self.table
    }

    /// The ID of a `name_crc`, or of a bare name.
    pub fn id_of(&self, name_or_name_crc: &str) -> Option<u16> {
        self.table
            .iter()
            .find(|(_, n)| n.as_str() == name_or_name_crc)
            .map(|(&id, _)| id)
            .or_else(|| self.by_name(name_or_name_crc).map(|m| m.id))
    }

    /// The modules, in the server's order.
    pub fn modules(&self) -> &[ModuleSummary] {
        &self.modules
    }

    /// Decodes a received message.
    pub fn decode<'a>(&'a self, bytes: &[u8]) -> Result<Decoded<'a>, MessageDecodeError> {
        let id = vlibapi::wire::msg_id(bytes).ok_or(MessageDecodeError::NoId)?;
        let info = self.by_id(id).ok_or(MessageDecodeError::UnknownId(id))?;
        let value = value::decode_message(&self.schema, &info.def, bytes).map_err(|error| {
            MessageDecodeError::Bad {
                name: info.def.name.clone(),
                error,
            }
        })?;
        Ok(Decoded { info, value })
    }

    /// The `context` of received bytes, read at the offset the schema gives (messages without
    /// a context field, such as most events, have none).
    pub fn context_of(&self, bytes: &[u8]) -> Option<u32> {
        let id = vlibapi::wire::msg_id(bytes)?;
        let off = self.by_id(id)?.context_offset?;
        let b = bytes.get(off..off + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What answers `name`: its service if it has one, else VPP's naming conventions (`_dump` gets
/// `_details`, anything else `_reply` if such a message exists). A closing reply the schema
/// does not describe cannot be recognised, so nothing is awaited for it.
fn reply_kind(name: &str, service: Option<&Service>, known: impl Fn(&str) -> bool) -> ReplyKind {
    if let Some(s) = service {
        if s.reply == "null" || s.reply.is_empty() {
            return ReplyKind::None;
        }
        if !s.stream && !known(&s.reply) {
            return ReplyKind::None;
        }
        if let Some(details) = &s.stream_msg {
            return ReplyKind::StreamThenReply {
                details: details.clone(),
                reply: s.reply.clone(),
            };
        }
        if s.stream {
            return ReplyKind::Dump {
                details: s.reply.clone(),
            };
        }
        return ReplyKind::Single {
            reply: s.reply.clone(),
        };
    }
    if let Some(stem) = name.strip_suffix("_dump") {
        let details = format!("{stem}_details");
        if known(&details) {
            return ReplyKind::Dump { details };
        }
    }
    let reply = format!("{name}_reply");
    if known(&reply) {
        return ReplyKind::Single { reply };
    }
    ReplyKind::None
}

/// Copies the `host_order` flags of vlibapi's own definitions onto the same messages (same
/// `name_crc`, same field names) of a module read from `get_api_json`.
fn restore_host_order(m: &mut Module, builtin: &Schema) {
    for msg in &mut m.messages {
        let Some(known) = builtin.message_by_name_crc(&msg.name_crc()) else {
            continue;
        };
        if known.fields.len() != msg.fields.len() {
            continue;
        }
        for (f, k) in msg.fields.iter_mut().zip(&known.fields) {
            if f.name == k.name {
                f.host_order = k.host_order;
            }
        }
    }
}

/// Reads a field's `default` option, if any, as JSON.
pub fn field_default(f: &schema::Field) -> Option<&Json> {
    f.options
        .iter()
        .find(|(k, _)| k == "default")
        .map(|(_, v)| v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example plugin's API, as the server publishes it.
    pub(crate) const EXAMPLE_JSON: &str = include_str!("../../example-plugin/api/example.api.json");

    /// An API like the real server's: the core modules plus the example plugin, with IDs
    /// assigned as the server assigns them.
    pub(crate) fn example_api() -> Api {
        let mut t = MessageTable::with_core();
        t.add_module(Module::from_json_text("example", EXAMPLE_JSON).unwrap())
            .unwrap();
        let table: Vec<(u16, String)> = t.iter().map(|i| (i.id, i.name_crc.to_owned())).collect();
        let modules: Vec<ModuleSummary> = t
            .modules()
            .map(|m| ModuleSummary {
                name: m.name.to_owned(),
                version: m.version,
            })
            .collect();
        Api::load(table, &t.api_json(), &modules).unwrap()
    }

    #[test]
    fn loads_every_described_message_with_its_id_and_reply_kind() {
        let api = example_api();
        let ping = api.by_name("control_ping").unwrap();
        assert_eq!(ping.id, 23);
        assert_eq!(ping.module, "memclnt");
        assert_eq!(ping.client_index_offset, Some(2));
        assert_eq!(ping.context_offset, Some(6));
        assert_eq!(
            ping.reply,
            ReplyKind::Single {
                reply: "control_ping_reply".into()
            }
        );
        let dump = api.by_name("sw_thing_dump").unwrap();
        assert_eq!(dump.module, "example");
        assert_eq!(
            dump.reply,
            ReplyKind::Dump {
                details: "sw_thing_details".into()
            }
        );
        assert_eq!(
            api.by_name("trace_plugin_msg_ids").unwrap().reply,
            ReplyKind::None
        );
        // An event has no context; its client_index is not mistaken for one.
        let ev = api.by_name("sw_thing_event").unwrap();
        assert_eq!(ev.context_offset, None);
        // Replies, details and events are answers; requests are not.
        assert!(ev.is_answer);
        assert!(api.by_name("sw_thing_details").unwrap().is_answer);
        assert!(api.by_name("control_ping_reply").unwrap().is_answer);
        assert!(!dump.is_answer && !ping.is_answer);
        assert_eq!(api.id_of("control_ping_51077d14"), Some(23));
        assert_eq!(api.id_of("control_ping"), Some(23));
        assert_eq!(api.id_of("nope"), None);
        assert_eq!(api.modules()[0].name, "memclnt");
        assert_eq!(api.modules().last().unwrap().name, "example");
        assert_eq!(api.table().len(), api.messages().count());
    }

    #[test]
    fn host_order_is_restored_for_core_messages() {
        let api = example_api();
        let m = api.by_name("memfd_segment_create").unwrap();
        let f = m
            .def
            .fields
            .iter()
            .find(|f| f.name == "requested_size")
            .unwrap();
        assert!(f.host_order);
    }

    #[test]
    fn conventions_decide_when_there_is_no_service() {
        let known = |n: &str| matches!(n, "a_details" | "b_reply");
        assert_eq!(
            reply_kind("a_dump", None, known),
            ReplyKind::Dump {
                details: "a_details".into()
            }
        );
        assert_eq!(
            reply_kind("b", None, known),
            ReplyKind::Single {
                reply: "b_reply".into()
            }
        );
        assert_eq!(reply_kind("c", None, known), ReplyKind::None);
        let unknown_reply = Service {
            request: "u".into(),
            reply: "u_reply".into(),
            stream: false,
            stream_msg: None,
            events: vec![],
        };
        assert_eq!(
            reply_kind("u", Some(&unknown_reply), known),
            ReplyKind::None
        );
        let s = Service {
            request: "g".into(),
            reply: "g_reply".into(),
            stream: true,
            stream_msg: Some("g_details".into()),
            events: vec![],
        };
        assert_eq!(
            reply_kind("g", Some(&s), known),
            ReplyKind::StreamThenReply {
                details: "g_details".into(),
                reply: "g_reply".into()
            }
        );
    }

    #[test]
    fn decoding_reports_unknown_and_bad_messages() {
        let api = example_api();
        assert_eq!(api.decode(&[1]).unwrap_err(), MessageDecodeError::NoId);
        assert_eq!(
            api.decode(&[0xff, 0xff]).unwrap_err(),
            MessageDecodeError::UnknownId(0xffff)
        );
        let id = api.by_name("control_ping_reply").unwrap().id;
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 9, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0, 0, 0, 2]);
        let d = api.decode(&bytes).unwrap();
        assert_eq!(d.context(), Some(9));
        assert_eq!(d.retval(), Some(-2));
        assert_eq!(api.context_of(&bytes), Some(9));
        assert!(matches!(
            api.decode(&bytes[..5]),
            Err(MessageDecodeError::Bad { .. })
        ));
    }

    /// Two documents shaped as real VPP's `get_api_json` returns them: each names itself, one
    /// repeats an imported type, and memclnt is not among them.
    const VPP_SHAPED: &str = r#"[
        {"module": "ip_types", "types": [["address", ["u8", "af"], ["u8", "un", 16]]],
         "messages": [], "services": {}, "options": {"version": "3.0.0"}},
        {"module": "flow",
         "types": [["address", ["u8", "af"], ["u8", "un", 16]],
                   ["address", ["u8", "af"], ["u8", "un", 16]]],
         "messages": [
            ["flow_probe", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
             ["vl_api_address_t", "a"], {"crc": "0x11111111"}],
            ["flow_probe_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"],
             {"crc": "0x22222222"}]],
         "services": {"flow_probe": {"reply": "flow_probe_reply"}},
         "options": {"version": "1.0.0"}}
    ]"#;

    #[test]
    fn a_vpp_shaped_api_loads_with_memclnt_built_in() {
        let core = MessageTable::with_core();
        let ping = core.schema().message("control_ping").unwrap().name_crc();
        let ping_reply = core
            .schema()
            .message("control_ping_reply")
            .unwrap()
            .name_crc();
        let table = vec![
            (10u16, ping.clone()),
            (11, ping_reply),
            (600, "flow_probe_11111111".to_owned()),
            (601, "flow_probe_22222222".to_owned()),
        ];
        // VPP answers api_versions with no modules over the socket.
        let api = Api::load(table, VPP_SHAPED, &[]).unwrap();
        let names: Vec<&str> = api.modules().iter().map(|m| m.name.as_str()).collect();
        assert!(names.starts_with(&["ip_types", "flow"]), "{names:?}");
        assert_eq!(api.by_name("flow_probe").unwrap().module, "flow");
        assert_eq!(api.by_name("flow_probe").unwrap().id, 600);
        assert_eq!(api.id_of("control_ping"), Some(10));
        assert_eq!(api.by_name("control_ping").unwrap().id, 10);
        assert_eq!(api.by_name("control_ping").unwrap().module, "memclnt");
    }

    #[test]
    fn load_errors_are_reported() {
        assert!(matches!(
            Api::load([], "{", &[]),
            Err(ApiLoadError::Json(_))
        ));
        assert!(matches!(
            Api::load([], "{}", &[]),
            Err(ApiLoadError::NotAList)
        ));
        assert!(matches!(
            Api::load([], "[[1]]", &[]),
            Err(ApiLoadError::Schema { index: 0, .. })
        ));
    }
}
