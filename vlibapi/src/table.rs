//! The message table: which ID each message has, and what each module is.
//!
//! memclnt always comes first and takes IDs 1-28 in file order (vpp_papi hard-codes
//! `sockclnt_create` = 15 and its reply = 16). Every module registered after it takes the next
//! contiguous range, in registration order. Clients learn the IDs from the `name_crc` keys in
//! `sockclnt_create_reply` (or the shared-memory table) and never assume them.

use std::collections::HashMap;
use std::fmt;

use crate::json::Json;
use crate::msgs::memclnt;
use crate::schema::{MessageDef, Module, Schema, SchemaLoadError, Version, WriteOptions};
use crate::wire::Message;

/// One message's row of the table.
#[derive(Debug, Clone, Copy)]
pub struct MessageInfo<'a> {
    /// Its ID.
    pub id: u16,
    /// Its definition (name, fields, CRC).
    pub def: &'a MessageDef,
    /// `name_crc8hex`.
    pub name_crc: &'a str,
    /// The module that defines it.
    pub module: &'a str,
}

/// One module's row: its ID range and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo<'a> {
    /// The module's name.
    pub name: &'a str,
    /// Its first message ID (what `get_first_msg_id` answers).
    pub first_id: u16,
    /// How many messages it has.
    pub count: u16,
    /// Its version.
    pub version: Version,
}

/// Why a module could not be added.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TableAddError {
    /// A module of that name is already registered.
    DuplicateModule(String),
    /// A message with that `name_crc` is already registered.
    DuplicateMessage(String),
    /// The IDs would run past 65535.
    OutOfIds,
    /// The module fails its schema check.
    Schema(SchemaLoadError),
}

impl fmt::Display for TableAddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableAddError::DuplicateModule(m) => write!(f, "module `{m}` is already registered"),
            TableAddError::DuplicateMessage(m) => write!(f, "message `{m}` is already registered"),
            TableAddError::OutOfIds => write!(f, "no message ids left"),
            TableAddError::Schema(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TableAddError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TableAddError::Schema(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    module: usize,
    msg: usize,
    name_crc: String,
}

/// The name+CRC to ID table of every registered module.
#[derive(Debug, Clone)]
pub struct MessageTable {
    schema: Schema,
    first_ids: Vec<u16>,
    /// Row `id - 1` describes message `id`.
    entries: Vec<Entry>,
    by_name_crc: HashMap<String, u16>,
    by_name: HashMap<String, u16>,
}

impl Default for MessageTable {
    fn default() -> Self {
        MessageTable::new()
    }
}

impl MessageTable {
    /// A table holding memclnt alone (IDs 1-28).
    pub fn new() -> MessageTable {
        let mut t = MessageTable {
            schema: Schema::new(),
            first_ids: Vec::new(),
            entries: Vec::new(),
            by_name_crc: HashMap::new(),
            by_name: HashMap::new(),
        };
        t.push(memclnt::schema());
        t
    }

    /// memclnt, then our core modules: memfd (29, 30), vpe, vlib_api.
    pub fn with_core() -> MessageTable {
        let mut t = MessageTable::new();
        for m in [
            crate::msgs::memfd::schema(),
            crate::msgs::vpe::schema(),
            crate::msgs::vlib_api::schema(),
        ] {
            t.push(m);
        }
        t
    }

    /// Infallible registration for modules known to be valid and distinct (our own).
    fn push(&mut self, m: Module) {
        let first = self.entries.len() as u16 + 1;
        let mi = self.schema.modules().len();
        for (i, msg) in m.messages.iter().enumerate() {
            let id = first + i as u16;
            let name_crc = msg.name_crc();
            self.by_name_crc.insert(name_crc.clone(), id);
            self.by_name.entry(msg.name.clone()).or_insert(id);
            self.entries.push(Entry {
                module: mi,
                msg: i,
                name_crc,
            });
        }
        self.first_ids.push(first);
        self.schema.push(m);
    }

    /// Registers a module (a plugin's generated `schema()`, or one read from JSON); its
    /// messages take the next contiguous IDs. Returns the first of them.
    pub fn add_module(&mut self, m: Module) -> Result<u16, TableAddError> {
        m.check().map_err(TableAddError::Schema)?;
        if self.module(&m.name).is_some() {
            return Err(TableAddError::DuplicateModule(m.name));
        }
        for msg in &m.messages {
            let key = msg.name_crc();
            if self.by_name_crc.contains_key(&key) {
                return Err(TableAddError::DuplicateMessage(key));
            }
        }
        if self.entries.len() + m.messages.len() > usize::from(u16::MAX) {
            return Err(TableAddError::OutOfIds);
        }
        let first = self.entries.len() as u16 + 1;
        self.push(m);
        Ok(first)
    }

    /// The schema of every module, for the dynamic codec.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Number of messages (the highest ID).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the table is empty (it never is: memclnt is always there).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ID of a `name_crc` key.
    pub fn id(&self, name_crc: &str) -> Option<u16> {
        self.by_name_crc.get(name_crc).copied()
    }

    /// The ID of a message by name alone (the first module's, if several define it).
    pub fn id_by_name(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    /// The ID of a generated message type.
    pub fn id_of<M: Message>(&self) -> Option<u16> {
        self.id(M::NAME_CRC)
    }

    /// Everything about message `id`.
    pub fn info(&self, id: u16) -> Option<MessageInfo<'_>> {
        let e = self.entries.get(usize::from(id).checked_sub(1)?)?;
        let m = &self.schema.modules()[e.module];
        Some(MessageInfo {
            id,
            def: &m.messages[e.msg],
            name_crc: &e.name_crc,
            module: &m.name,
        })
    }

    /// Every message, in ID order.
    pub fn iter(&self) -> impl Iterator<Item = MessageInfo<'_>> + '_ {
        (1..=self.entries.len() as u16).filter_map(|id| self.info(id))
    }

    /// A module's row.
    pub fn module(&self, name: &str) -> Option<ModuleInfo<'_>> {
        let mi = self.schema.modules().iter().position(|m| m.name == name)?;
        Some(self.module_info(mi))
    }

    fn module_info(&self, mi: usize) -> ModuleInfo<'_> {
        let m = &self.schema.modules()[mi];
        ModuleInfo {
            name: &m.name,
            first_id: self.first_ids[mi],
            count: m.messages.len() as u16,
            version: m.version,
        }
    }

    /// Every module, in registration (and ID) order: what `api_versions` reports.
    pub fn modules(&self) -> impl Iterator<Item = ModuleInfo<'_>> + '_ {
        (0..self.first_ids.len()).map(|mi| self.module_info(mi))
    }

    /// The first message ID of a module.
    #[doc(alias = "get_first_msg_id")]
    pub fn first_msg_id(&self, module: &str) -> Option<u16> {
        self.module(module).map(|m| m.first_id)
    }

    /// The entries of `sockclnt_create_reply.message_table`, in ID order.
    pub fn sockclnt_entries(&self) -> Vec<memclnt::MessageTableEntry> {
        self.iter()
            .map(|i| memclnt::MessageTableEntry {
                index: i.id,
                name: i.name_crc.to_owned(),
            })
            .collect()
    }

    /// The `api_versions_reply` entries.
    pub fn api_versions(&self) -> Vec<memclnt::ModuleVersion> {
        self.modules()
            .map(|m| memclnt::ModuleVersion {
                major: m.version.major,
                minor: m.version.minor,
                patch: m.version.patch,
                name: m.name.to_owned(),
            })
            .collect()
    }

    /// `get_api_json`: a JSON array with one VPP-shaped document per module, memclnt included,
    /// our overlay keys left out.
    pub fn api_json(&self) -> String {
        let docs = self
            .schema
            .modules()
            .iter()
            .map(|m| m.to_json(WriteOptions::default()))
            .collect();
        Json::Array(docs).to_compact()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::{memfd, vlib_api, vpe};

    #[test]
    fn memclnt_ids_are_fixed_and_modules_follow() {
        let t = MessageTable::with_core();
        assert_eq!(t.id_by_name("memclnt_create"), Some(1));
        assert_eq!(t.id_by_name("sockclnt_create"), Some(15));
        assert_eq!(t.id_by_name("sockclnt_create_reply"), Some(16));
        assert_eq!(t.id_by_name("get_api_json_reply"), Some(28));
        assert_eq!(t.id_of::<memfd::MemfdSegmentCreate>(), Some(29));
        assert_eq!(t.id_of::<memfd::MemfdSegmentCreateReply>(), Some(30));
        assert_eq!(t.first_msg_id("vpe"), Some(31));
        assert_eq!(t.id_of::<vpe::CliInbandReply>(), Some(34));
        assert_eq!(t.first_msg_id("vlib_api"), Some(35));
        assert_eq!(t.id_of::<vlib_api::ApiClientDetails>(), Some(36));
        assert_eq!(t.len(), 36);
        assert_eq!(t.id("control_ping_51077d14"), Some(23));
        assert_eq!(t.id("control_ping_00000000"), None);
        let info = t.info(16).unwrap();
        assert_eq!(info.name_crc, "sockclnt_create_reply_35166268");
        assert_eq!(info.module, "memclnt");
        assert!(t.info(0).is_none());
        assert!(t.info(37).is_none());
        let names: Vec<_> = t.modules().map(|m| (m.name, m.first_id, m.count)).collect();
        assert_eq!(
            names,
            [
                ("memclnt", 1, 28),
                ("memfd", 29, 2),
                ("vpe", 31, 4),
                ("vlib_api", 35, 2)
            ]
        );
        assert_eq!(t.api_versions()[0].major, 2);
        assert_eq!(t.api_versions()[0].minor, 1);
        let e = t.sockclnt_entries();
        assert_eq!(e.len(), 36);
        assert_eq!(
            (e[14].index, e[14].name.as_str()),
            (15, "sockclnt_create_455fb9c4")
        );
    }

    #[test]
    fn plugins_get_contiguous_ranges_and_duplicates_are_refused() {
        let mut t = MessageTable::with_core();
        let plugin = Module::from_json_text(
            "acl",
            r#"{"messages": [["acl_a", ["u16", "_vl_msg_id"], ["u32", "context"]],
                             ["acl_b", ["u16", "_vl_msg_id"], ["u32", "context"]]],
                "options": {"version": "1.0.2"}}"#,
        )
        .unwrap();
        assert_eq!(t.add_module(plugin.clone()), Ok(37));
        assert_eq!(t.first_msg_id("acl"), Some(37));
        assert_eq!(t.id_by_name("acl_b"), Some(38));
        assert_eq!(
            t.add_module(plugin.clone()),
            Err(TableAddError::DuplicateModule("acl".into()))
        );
        let mut renamed = plugin;
        renamed.name = "acl2".into();
        assert!(matches!(
            t.add_module(renamed),
            Err(TableAddError::DuplicateMessage(_))
        ));
        let v = t.module("acl").unwrap().version;
        assert_eq!((v.major, v.minor, v.patch), (1, 0, 2));
    }

    #[test]
    fn api_json_is_an_array_of_vpp_documents() {
        let t = MessageTable::with_core();
        let text = t.api_json();
        assert!(!text.contains("host_order"));
        let docs = crate::json::parse(&text).unwrap();
        let docs = docs.as_array().unwrap();
        assert_eq!(docs.len(), 4);
        for (doc, m) in docs.iter().zip(t.schema().modules()) {
            assert_eq!(&Module::from_json(&m.name, doc).unwrap().messages, &{
                let mut msgs = m.messages.clone();
                for msg in &mut msgs {
                    for f in &mut msg.fields {
                        f.host_order = false;
                    }
                }
                msgs
            });
        }
        let s = Schema::from_api_json_array(&text).unwrap();
        assert!(
            s.message_by_name_crc("control_ping_reply_f6b0b8ca")
                .is_some()
        );
    }
}
