//! The schema model: one API module as VPP's `.api.json` describes it.
//!
//! A [`Module`] is read from a `.api.json` document ([`Module::from_json_text`]), checked
//! (every named type resolves inside the document, no type contains itself, length fields exist,
//! unions are fixed-size), and written back in VPP's shape ([`Module::to_json`]). The same model
//! drives the build-time generator ([`crate::codegen`]), the run-time dynamic codec
//! ([`crate::value`]) and `get_api_json`.
//!
//! # Our additions to the format
//!
//! * A field may carry `"host_order": true` in its trailing options object. The field is then
//!   sent in host byte order instead of network order (VPP's memclnt bootstrap messages do this
//!   for pointers and handles). The key is consumed by the reader and never written to
//!   `get_api_json` output.
//! * A message without a `crc` gets one computed by [`message_crc`]: CRC-32 (IEEE 802.3, the
//!   zlib polynomial) of its canonical signature ([`message_signature`]), which spells out the
//!   name and every field (type, name, array shape, byte order) with named types expanded
//!   recursively. A module without `vl_api_version` gets the CRC-32 of all its message
//!   signatures, one per line.
//!
//! Documents must be self-contained, as vppapigen's output is (it copies imported types into
//! every file). The module's name is not part of the document; callers supply it (it is the file
//! stem, `memclnt` for `memclnt.api.json`).
//!
//! This file is also compiled into `build.rs` (through `#[path]`), so it uses only `std` and
//! [`crate::json`].

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::json::{self, Json, JsonParseError, Number};

/// Deepest nesting of named types accepted (a type containing a type containing ...).
pub const MAX_TYPE_DEPTH: usize = 32;

/// A scalar wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseType {
    /// `u8`
    U8,
    /// `i8`
    I8,
    /// `u16`
    U16,
    /// `i16`
    I16,
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `u64`
    U64,
    /// `i64`
    I64,
    /// `f64`
    F64,
    /// `bool`, one byte.
    Bool,
}

impl BaseType {
    /// Every base type, in a fixed order.
    pub const ALL: [BaseType; 10] = [
        BaseType::U8,
        BaseType::I8,
        BaseType::U16,
        BaseType::I16,
        BaseType::U32,
        BaseType::I32,
        BaseType::U64,
        BaseType::I64,
        BaseType::F64,
        BaseType::Bool,
    ];

    /// The type's name in `.api.json` (`"u32"`).
    pub fn name(self) -> &'static str {
        match self {
            BaseType::U8 => "u8",
            BaseType::I8 => "i8",
            BaseType::U16 => "u16",
            BaseType::I16 => "i16",
            BaseType::U32 => "u32",
            BaseType::I32 => "i32",
            BaseType::U64 => "u64",
            BaseType::I64 => "i64",
            BaseType::F64 => "f64",
            BaseType::Bool => "bool",
        }
    }

    /// Parses a base type name.
    pub fn from_name(name: &str) -> Option<BaseType> {
        BaseType::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Size on the wire, in bytes.
    pub fn size(self) -> usize {
        match self {
            BaseType::U8 | BaseType::I8 | BaseType::Bool => 1,
            BaseType::U16 | BaseType::I16 => 2,
            BaseType::U32 | BaseType::I32 => 4,
            BaseType::U64 | BaseType::I64 | BaseType::F64 => 8,
        }
    }

    /// True for the integer types (which can count array elements or underlie enums).
    pub fn is_integer(self) -> bool {
        !matches!(self, BaseType::F64 | BaseType::Bool)
    }
}

/// The type of a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeRef {
    /// A scalar.
    Base(BaseType),
    /// `string`; its field's [`ArrayKind`] says whether it is fixed (`[N]`) or variable (`[0]`).
    String,
    /// A type, union, enum, enumflag or alias of the module, by its bare name (`module_version`
    /// for `vl_api_module_version_t`).
    Named(String),
}

impl TypeRef {
    /// Parses a field type as written in `.api.json` (`u32`, `string`, `vl_api_x_t`).
    pub fn from_api_name(name: &str) -> TypeRef {
        if name == "string" {
            return TypeRef::String;
        }
        if let Some(b) = BaseType::from_name(name) {
            return TypeRef::Base(b);
        }
        let bare = name
            .strip_prefix("vl_api_")
            .and_then(|s| s.strip_suffix("_t"))
            .unwrap_or(name);
        TypeRef::Named(bare.to_owned())
    }

    /// The type as written in `.api.json`.
    pub fn api_name(&self) -> String {
        match self {
            TypeRef::Base(b) => b.name().to_owned(),
            TypeRef::String => "string".to_owned(),
            TypeRef::Named(n) => format!("vl_api_{n}_t"),
        }
    }
}

/// How many of a field's type there are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArrayKind {
    /// One value (`[t, n]`).
    None,
    /// Exactly N (`[t, n, N]`); for `string`, N bytes NUL padded.
    Fixed(u32),
    /// As many as the earlier integer field named here says (`[t, n, 0, "count"]`).
    Counted(String),
    /// `[t, n, 0]`: for `string`, a u32 length and that many bytes; for other types, elements up
    /// to the end of the message (a legacy form; only valid as the last field).
    Unsized,
}

/// One field of a message, type or union.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The field's type.
    pub ty: TypeRef,
    /// The field's name.
    pub name: String,
    /// Its array shape.
    pub array: ArrayKind,
    /// Sent in host byte order instead of network order (our overlay key `host_order`).
    pub host_order: bool,
    /// The trailing options object (`default`, `limit`, ...), minus our overlay key.
    pub options: Vec<(String, Json)>,
}

impl Field {
    /// A field of one value.
    pub fn new(ty: TypeRef, name: &str) -> Field {
        Field {
            ty,
            name: name.to_owned(),
            array: ArrayKind::None,
            host_order: false,
            options: Vec::new(),
        }
    }

    /// True for `string x[N]`.
    pub fn is_fixed_string(&self) -> bool {
        self.ty == TypeRef::String && matches!(self.array, ArrayKind::Fixed(_))
    }

    /// True for `string x[]`.
    pub fn is_var_string(&self) -> bool {
        self.ty == TypeRef::String && self.array == ArrayKind::Unsized
    }
}

/// A message definition. `_vl_msg_id` is not among the fields: every message starts with it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    /// The message's name (`control_ping`).
    pub name: String,
    /// The fields after `_vl_msg_id`.
    pub fields: Vec<Field>,
    /// The CRC that goes into the name+CRC key.
    pub crc: u32,
    /// The `options` member of the message's trailing object (`deprecated`, ...).
    pub options: Vec<(String, Json)>,
}

impl MessageDef {
    /// `name_crc8hex`, the key of the message table (`control_ping_51077d14`).
    pub fn name_crc(&self) -> String {
        name_crc(&self.name, self.crc)
    }
}

/// Formats the message-table key of a message.
pub fn name_crc(name: &str, crc: u32) -> String {
    format!("{name}_{crc:08x}")
}

/// A struct type (`types` in `.api.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct StructDef {
    /// Bare name.
    pub name: String,
    /// Its fields.
    pub fields: Vec<Field>,
}

/// A union: every member starts at offset 0, the size is the largest member's.
#[derive(Debug, Clone, PartialEq)]
pub struct UnionDef {
    /// Bare name.
    pub name: String,
    /// Its members.
    pub fields: Vec<Field>,
}

/// An enum or enumflag.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumDef {
    /// Bare name.
    pub name: String,
    /// The integer type on the wire (`enumtype`, u32 when absent).
    pub underlying: BaseType,
    /// Named values, in document order.
    pub values: Vec<(String, i64)>,
}

/// An alias: another name for a type, optionally a fixed array of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasDef {
    /// Bare name.
    pub name: String,
    /// The aliased type.
    pub ty: TypeRef,
    /// `length`: the alias is an array of this many.
    pub length: Option<u32>,
}

/// A request and what answers it (`services` in `.api.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The request message.
    pub request: String,
    /// The reply message, or `"null"` when there is none.
    pub reply: String,
    /// The reply is a stream of details (a dump).
    pub stream: bool,
    /// The streamed message, for `_get` style services.
    pub stream_msg: Option<String>,
    /// Events the request subscribes to.
    pub events: Vec<String>,
}

/// A module version (`option version = "x.y.z"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One API module: everything one `.api.json` document defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// The module's name (file stem), used by `get_first_msg_id` and `api_versions`.
    pub name: String,
    /// From `options.version`.
    pub version: Version,
    /// The other members of `options`, kept for output.
    pub options: Vec<(String, Json)>,
    /// Struct types.
    pub types: Vec<StructDef>,
    /// Messages, in document order (which is ID order).
    pub messages: Vec<MessageDef>,
    /// Unions.
    pub unions: Vec<UnionDef>,
    /// Enums.
    pub enums: Vec<EnumDef>,
    /// Enumflags.
    pub enumflags: Vec<EnumDef>,
    /// Aliases.
    pub aliases: Vec<AliasDef>,
    /// Request/reply relations.
    pub services: Vec<Service>,
    /// The module's `vl_api_version` CRC.
    pub vl_api_version: u32,
}

/// A named type of a module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NamedType<'a> {
    /// A struct.
    Struct(&'a StructDef),
    /// A union.
    Union(&'a UnionDef),
    /// An enum.
    Enum(&'a EnumDef),
    /// An enumflag.
    EnumFlags(&'a EnumDef),
    /// An alias.
    Alias(&'a AliasDef),
}

/// Anything that can resolve a bare type name.
pub trait TypeLookup {
    /// The named type, if defined.
    fn named(&self, name: &str) -> Option<NamedType<'_>>;
}

impl TypeLookup for Module {
    fn named(&self, name: &str) -> Option<NamedType<'_>> {
        if let Some(t) = self.types.iter().find(|t| t.name == name) {
            return Some(NamedType::Struct(t));
        }
        if let Some(t) = self.unions.iter().find(|t| t.name == name) {
            return Some(NamedType::Union(t));
        }
        if let Some(t) = self.enums.iter().find(|t| t.name == name) {
            return Some(NamedType::Enum(t));
        }
        if let Some(t) = self.enumflags.iter().find(|t| t.name == name) {
            return Some(NamedType::EnumFlags(t));
        }
        self.aliases
            .iter()
            .find(|t| t.name == name)
            .map(NamedType::Alias)
    }
}

/// Why a `.api.json` document was rejected.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SchemaLoadError {
    /// The text is not JSON.
    Json(JsonParseError),
    /// The JSON is not shaped like an API document; `path` says where.
    Shape {
        /// Where, e.g. `messages[3] (sockclnt_create_reply) field 2`.
        path: String,
        /// What was expected.
        what: String,
    },
    /// A field names a type the document does not define.
    UnknownType {
        /// Where.
        path: String,
        /// The missing type's bare name.
        ty: String,
    },
    /// A type contains itself, or types nest deeper than [`MAX_TYPE_DEPTH`].
    Recursive {
        /// The type at which the cycle or depth limit was found.
        ty: String,
    },
    /// A field's shape is not allowed where it is (bad length field, variable-size union
    /// member, unsized array not last, ...).
    BadField {
        /// Where.
        path: String,
        /// Why.
        what: String,
    },
    /// Two definitions share a name.
    Duplicate {
        /// `message`, `type`, `field`.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
}

impl fmt::Display for SchemaLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaLoadError::Json(e) => write!(f, "api json: {e}"),
            SchemaLoadError::Shape { path, what } => write!(f, "api json: {path}: expected {what}"),
            SchemaLoadError::UnknownType { path, ty } => {
                write!(f, "api json: {path}: unknown type `{ty}`")
            }
            SchemaLoadError::Recursive { ty } => {
                write!(
                    f,
                    "api json: type `{ty}` contains itself or nests too deeply"
                )
            }
            SchemaLoadError::BadField { path, what } => write!(f, "api json: {path}: {what}"),
            SchemaLoadError::Duplicate { kind, name } => {
                write!(f, "api json: duplicate {kind} `{name}`")
            }
        }
    }
}

impl std::error::Error for SchemaLoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SchemaLoadError::Json(e) => Some(e),
            _ => None,
        }
    }
}

fn shape(path: &str, what: &str) -> SchemaLoadError {
    SchemaLoadError::Shape {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

/// Options for writing a module as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Write our `host_order` overlay key (off for `get_api_json`, which must look like VPP's).
    pub host_order_overlay: bool,
}

impl Module {
    /// An empty module.
    pub fn new(name: &str) -> Module {
        Module {
            name: name.to_owned(),
            version: Version::default(),
            options: Vec::new(),
            types: Vec::new(),
            messages: Vec::new(),
            unions: Vec::new(),
            enums: Vec::new(),
            enumflags: Vec::new(),
            aliases: Vec::new(),
            services: Vec::new(),
            vl_api_version: 0,
        }
    }

    /// Parses and checks one `.api.json` document.
    pub fn from_json_text(name: &str, text: &str) -> Result<Module, SchemaLoadError> {
        let doc = json::parse(text).map_err(SchemaLoadError::Json)?;
        Module::from_json(name, &doc)
    }

    /// Reads and checks a parsed `.api.json` document. Missing CRCs are computed.
    pub fn from_json(name: &str, doc: &Json) -> Result<Module, SchemaLoadError> {
        let mut m = Module::new(name);
        if doc.as_object().is_none() {
            return Err(shape("document", "an object"));
        }
        let mut crc_missing = Vec::new();
        // VPP's `get_api_json` repeats imported types in a document (flow.api carries
        // `address` twice): an exact repeat is the same type and is kept once; a different
        // definition under the same name stays a duplicate for `check` to refuse.
        fn push_new<T: PartialEq>(list: &mut Vec<T>, def: T) {
            if !list.contains(&def) {
                list.push(def);
            }
        }
        for (i, t) in list(doc, "types")?.iter().enumerate() {
            let (name, fields, _) = read_def(t, &format!("types[{i}]"))?;
            push_new(&mut m.types, StructDef { name, fields });
        }
        for (i, t) in list(doc, "unions")?.iter().enumerate() {
            let (name, fields, _) = read_def(t, &format!("unions[{i}]"))?;
            push_new(&mut m.unions, UnionDef { name, fields });
        }
        for (i, t) in list(doc, "enums")?.iter().enumerate() {
            push_new(&mut m.enums, read_enum(t, &format!("enums[{i}]"))?);
        }
        for (i, t) in list(doc, "enumflags")?.iter().enumerate() {
            push_new(&mut m.enumflags, read_enum(t, &format!("enumflags[{i}]"))?);
        }
        if let Some(aliases) = doc.get("aliases") {
            let members = aliases
                .as_object()
                .ok_or_else(|| shape("aliases", "an object"))?;
            for (name, def) in members {
                let path = format!("aliases.{name}");
                let ty = def
                    .get("type")
                    .and_then(Json::as_str)
                    .ok_or_else(|| shape(&path, "a `type` string"))?;
                let length = match def.get("length") {
                    None => None,
                    Some(l) => Some(
                        l.as_u64()
                            .and_then(|l| u32::try_from(l).ok())
                            .ok_or_else(|| shape(&path, "a u32 `length`"))?,
                    ),
                };
                m.aliases.push(AliasDef {
                    name: name.clone(),
                    ty: TypeRef::from_api_name(ty),
                    length,
                });
            }
        }
        for (i, t) in list(doc, "messages")?.iter().enumerate() {
            let path = format!("messages[{i}]");
            let (name, mut fields, trailer) = read_def(t, &path)?;
            if fields.first().is_some_and(|f| f.name == "_vl_msg_id") {
                fields.remove(0);
            }
            let mut crc = None;
            let mut options = Vec::new();
            if let Some(trailer) = trailer {
                if let Some(c) = trailer.get("crc") {
                    let text = c.as_str().ok_or_else(|| shape(&path, "a `crc` string"))?;
                    let hex = text.strip_prefix("0x").unwrap_or(text);
                    crc = Some(
                        u32::from_str_radix(hex, 16)
                            .map_err(|_| shape(&path, "`crc` as 0x and 8 hex digits"))?,
                    );
                }
                if let Some(o) = trailer.get("options") {
                    options = o
                        .as_object()
                        .ok_or_else(|| shape(&path, "an `options` object"))?
                        .to_vec();
                }
            }
            if crc.is_none() {
                crc_missing.push(m.messages.len());
            }
            m.messages.push(MessageDef {
                name,
                fields,
                crc: crc.unwrap_or(0),
                options,
            });
        }
        if let Some(services) = doc.get("services") {
            // Some generators wrote an empty list here; accept it as no services.
            let members: &[(String, Json)] = match services {
                Json::Object(o) => o,
                Json::Array(a) if a.is_empty() => &[],
                _ => return Err(shape("services", "an object")),
            };
            for (request, def) in members {
                let path = format!("services.{request}");
                let reply = def
                    .get("reply")
                    .and_then(Json::as_str)
                    .ok_or_else(|| shape(&path, "a `reply` string"))?;
                let stream = matches!(def.get("stream"), Some(Json::Bool(true)));
                let stream_msg = def
                    .get("stream_msg")
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                let mut events = Vec::new();
                if let Some(ev) = def.get("events") {
                    for e in ev
                        .as_array()
                        .ok_or_else(|| shape(&path, "an `events` list"))?
                    {
                        events.push(
                            e.as_str()
                                .ok_or_else(|| shape(&path, "event names"))?
                                .to_owned(),
                        );
                    }
                }
                m.services.push(Service {
                    request: request.clone(),
                    reply: reply.to_owned(),
                    stream,
                    stream_msg,
                    events,
                });
            }
        }
        if let Some(options) = doc.get("options") {
            let members = options
                .as_object()
                .ok_or_else(|| shape("options", "an object"))?;
            for (k, v) in members {
                if k == "version" {
                    let text = v
                        .as_str()
                        .ok_or_else(|| shape("options.version", "a string"))?;
                    m.version = parse_version(text)
                        .ok_or_else(|| shape("options.version", "\"major.minor.patch\""))?;
                } else {
                    m.options.push((k.clone(), v.clone()));
                }
            }
        }
        m.check()?;
        for i in crc_missing {
            m.messages[i].crc = message_crc(&m, &m.messages[i]);
        }
        m.vl_api_version = match doc.get("vl_api_version") {
            Some(v) => {
                let text = v
                    .as_str()
                    .ok_or_else(|| shape("vl_api_version", "a string"))?;
                let hex = text.strip_prefix("0x").unwrap_or(text);
                u32::from_str_radix(hex, 16)
                    .map_err(|_| shape("vl_api_version", "0x and 8 hex digits"))?
            }
            None => module_crc(&m),
        };
        Ok(m)
    }

    /// Checks names, type references, length fields, unions and recursion.
    pub fn check(&self) -> Result<(), SchemaLoadError> {
        let mut names = HashSet::new();
        let type_names = self
            .types
            .iter()
            .map(|t| &t.name)
            .chain(self.unions.iter().map(|t| &t.name))
            .chain(self.enums.iter().map(|t| &t.name))
            .chain(self.enumflags.iter().map(|t| &t.name))
            .chain(self.aliases.iter().map(|t| &t.name));
        for n in type_names {
            if !names.insert(n.as_str()) {
                return Err(SchemaLoadError::Duplicate {
                    kind: "type",
                    name: n.clone(),
                });
            }
        }
        let mut msg_names = HashSet::new();
        for m in &self.messages {
            if !msg_names.insert(m.name.as_str()) {
                return Err(SchemaLoadError::Duplicate {
                    kind: "message",
                    name: m.name.clone(),
                });
            }
        }
        for e in self.enums.iter().chain(&self.enumflags) {
            if !e.underlying.is_integer() {
                return Err(SchemaLoadError::BadField {
                    path: format!("enum {}", e.name),
                    what: "enumtype must be an integer type".to_owned(),
                });
            }
        }
        for t in &self.types {
            check_fields(self, &format!("type {}", t.name), &t.fields, false)?;
        }
        for u in &self.unions {
            check_fields(self, &format!("union {}", u.name), &u.fields, true)?;
        }
        for m in &self.messages {
            check_fields(self, &format!("message {}", m.name), &m.fields, false)?;
        }
        for a in &self.aliases {
            check_type_ref(self, &format!("alias {}", a.name), &a.ty)?;
            if a.ty == TypeRef::String {
                return Err(SchemaLoadError::BadField {
                    path: format!("alias {}", a.name),
                    what: "an alias of string is not supported".to_owned(),
                });
            }
            if a.length == Some(0) {
                return Err(SchemaLoadError::BadField {
                    path: format!("alias {}", a.name),
                    what: "length 0".to_owned(),
                });
            }
        }
        // Every type must be finite and not too deep; this also proves there are no cycles.
        for n in names {
            type_depth(self, n, 0)
                .ok_or_else(|| SchemaLoadError::Recursive { ty: n.to_owned() })?;
        }
        for a in &self.aliases {
            if a.length.is_some() && fixed_size(self, &a.ty).is_none() {
                return Err(SchemaLoadError::BadField {
                    path: format!("alias {}", a.name),
                    what: "an array alias of a variable-size type".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The message named `name`.
    pub fn message(&self, name: &str) -> Option<&MessageDef> {
        self.messages.iter().find(|m| m.name == name)
    }

    /// The module as a VPP `.api.json` document.
    pub fn to_json(&self, opts: WriteOptions) -> Json {
        let def = |name: &str, fields: &[Field], trailer: Option<Json>| {
            let mut v = vec![Json::String(name.to_owned())];
            v.extend(fields.iter().map(|f| field_to_json(f, opts)));
            v.extend(trailer);
            Json::Array(v)
        };
        let types = self.types.iter().map(|t| def(&t.name, &t.fields, None));
        let messages = self.messages.iter().map(|m| {
            let mut fields = vec![Field::new(TypeRef::Base(BaseType::U16), "_vl_msg_id")];
            fields.extend(m.fields.iter().cloned());
            let trailer = Json::Object(vec![
                ("crc".to_owned(), Json::String(format!("0x{:08x}", m.crc))),
                ("options".to_owned(), Json::Object(m.options.clone())),
            ]);
            def(&m.name, &fields, Some(trailer))
        });
        let unions = self.unions.iter().map(|u| def(&u.name, &u.fields, None));
        let enum_json = |e: &EnumDef| {
            let mut v = vec![Json::String(e.name.clone())];
            for (n, val) in &e.values {
                let num = if *val < 0 {
                    Number::Int(*val)
                } else {
                    Number::UInt(val.unsigned_abs())
                };
                v.push(Json::Array(vec![
                    Json::String(n.clone()),
                    Json::Number(num),
                ]));
            }
            v.push(Json::Object(vec![(
                "enumtype".to_owned(),
                Json::String(e.underlying.name().to_owned()),
            )]));
            Json::Array(v)
        };
        let aliases = self
            .aliases
            .iter()
            .map(|a| {
                let mut o = vec![("type".to_owned(), Json::String(a.ty.api_name()))];
                if let Some(l) = a.length {
                    o.push(("length".to_owned(), Json::Number(Number::UInt(l.into()))));
                }
                (a.name.clone(), Json::Object(o))
            })
            .collect();
        let services = self
            .services
            .iter()
            .map(|s| {
                let mut o = vec![("reply".to_owned(), Json::String(s.reply.clone()))];
                if s.stream {
                    o.push(("stream".to_owned(), Json::Bool(true)));
                }
                if let Some(sm) = &s.stream_msg {
                    o.push(("stream_msg".to_owned(), Json::String(sm.clone())));
                }
                if !s.events.is_empty() {
                    let ev = s.events.iter().map(|e| Json::String(e.clone())).collect();
                    o.push(("events".to_owned(), Json::Array(ev)));
                }
                (s.request.clone(), Json::Object(o))
            })
            .collect();
        let mut options = vec![("version".to_owned(), Json::String(self.version.to_string()))];
        options.extend(self.options.iter().cloned());
        Json::Object(vec![
            ("types".to_owned(), Json::Array(types.collect())),
            ("messages".to_owned(), Json::Array(messages.collect())),
            ("unions".to_owned(), Json::Array(unions.collect())),
            (
                "enums".to_owned(),
                Json::Array(self.enums.iter().map(enum_json).collect()),
            ),
            (
                "enumflags".to_owned(),
                Json::Array(self.enumflags.iter().map(enum_json).collect()),
            ),
            ("services".to_owned(), Json::Object(services)),
            ("options".to_owned(), Json::Object(options)),
            ("aliases".to_owned(), Json::Object(aliases)),
            (
                "vl_api_version".to_owned(),
                Json::String(format!("0x{:08x}", self.vl_api_version)),
            ),
        ])
    }
}

fn parse_version(text: &str) -> Option<Version> {
    let mut it = text.split('.').map(|p| p.parse::<u32>().ok());
    let v = Version {
        major: it.next()??,
        minor: it.next().unwrap_or(Some(0))?,
        patch: it.next().unwrap_or(Some(0))?,
    };
    it.next().is_none().then_some(v)
}

fn list<'a>(doc: &'a Json, key: &str) -> Result<&'a [Json], SchemaLoadError> {
    match doc.get(key) {
        None => Ok(&[]),
        Some(v) => v.as_array().ok_or_else(|| shape(key, "a list")),
    }
}

/// Reads `[name, field..., {trailer}?]`.
fn read_def<'a>(
    v: &'a Json,
    path: &str,
) -> Result<(String, Vec<Field>, Option<&'a Json>), SchemaLoadError> {
    let items = v
        .as_array()
        .ok_or_else(|| shape(path, "a list [name, fields...]"))?;
    let name = items
        .first()
        .and_then(Json::as_str)
        .ok_or_else(|| shape(path, "a name first"))?;
    let path = format!("{path} ({name})");
    let mut fields = Vec::new();
    let mut trailer = None;
    for (i, item) in items.iter().enumerate().skip(1) {
        match item {
            Json::Object(_) if i + 1 == items.len() => trailer = Some(item),
            _ => fields.push(read_field(item, &format!("{path} field {i}"))?),
        }
    }
    let mut seen = HashSet::new();
    for f in &fields {
        if !seen.insert(f.name.as_str()) {
            return Err(SchemaLoadError::Duplicate {
                kind: "field",
                name: format!("{name}.{}", f.name),
            });
        }
    }
    Ok((name.to_owned(), fields, trailer))
}

fn read_field(v: &Json, path: &str) -> Result<Field, SchemaLoadError> {
    let items = v
        .as_array()
        .ok_or_else(|| shape(path, "a field [type, name, ...]"))?;
    let (Some(ty), Some(name)) = (
        items.first().and_then(Json::as_str),
        items.get(1).and_then(Json::as_str),
    ) else {
        return Err(shape(path, "a field [type, name, ...]"));
    };
    let mut count = None;
    let mut length_field = None;
    let mut options = Vec::new();
    let mut host_order = false;
    for item in &items[2..] {
        match item {
            Json::Number(n) if count.is_none() && length_field.is_none() => {
                count = Some(
                    n.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| shape(path, "a u32 array length"))?,
                );
            }
            Json::String(s) if count.is_some() && length_field.is_none() => {
                length_field = Some(s.clone());
            }
            Json::Object(o) => {
                for (k, v) in o {
                    if k == "host_order" {
                        host_order = matches!(v, Json::Bool(true));
                    } else {
                        options.push((k.clone(), v.clone()));
                    }
                }
            }
            _ => {
                return Err(shape(
                    path,
                    "[type, name, length?, length_field?, options?]",
                ));
            }
        }
    }
    let ty = TypeRef::from_api_name(ty);
    let array = match (count, length_field) {
        (_, Some(lf)) => ArrayKind::Counted(lf),
        (Some(0), None) => ArrayKind::Unsized,
        (Some(n), None) => ArrayKind::Fixed(n),
        (None, None) => ArrayKind::None,
    };
    Ok(Field {
        ty,
        name: name.to_owned(),
        array,
        host_order,
        options,
    })
}

fn read_enum(v: &Json, path: &str) -> Result<EnumDef, SchemaLoadError> {
    let items = v
        .as_array()
        .ok_or_else(|| shape(path, "a list [name, [value, n]...]"))?;
    let name = items
        .first()
        .and_then(Json::as_str)
        .ok_or_else(|| shape(path, "a name first"))?;
    let path = format!("{path} ({name})");
    let mut underlying = BaseType::U32;
    let mut values = Vec::new();
    for item in &items[1..] {
        match item {
            Json::Object(_) => {
                if let Some(t) = item.get("enumtype") {
                    underlying = t
                        .as_str()
                        .and_then(BaseType::from_name)
                        .ok_or_else(|| shape(&path, "an integer enumtype"))?;
                }
            }
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(n), Json::Number(v)] => {
                    let v = v
                        .as_i64()
                        .ok_or_else(|| shape(&path, "integer enum values"))?;
                    values.push((n.clone(), v));
                }
                _ => return Err(shape(&path, "[\"NAME\", value] pairs")),
            },
            _ => return Err(shape(&path, "[\"NAME\", value] pairs")),
        }
    }
    Ok(EnumDef {
        name: name.to_owned(),
        underlying,
        values,
    })
}

fn field_to_json(f: &Field, opts: WriteOptions) -> Json {
    let mut v = vec![Json::String(f.ty.api_name()), Json::String(f.name.clone())];
    match &f.array {
        ArrayKind::None => {}
        ArrayKind::Fixed(n) => v.push(Json::Number(Number::UInt((*n).into()))),
        ArrayKind::Counted(lf) => {
            v.push(Json::Number(Number::UInt(0)));
            v.push(Json::String(lf.clone()));
        }
        ArrayKind::Unsized => v.push(Json::Number(Number::UInt(0))),
    }
    let mut options = f.options.clone();
    if opts.host_order_overlay && f.host_order {
        options.push(("host_order".to_owned(), Json::Bool(true)));
    }
    if !options.is_empty() {
        v.push(Json::Object(options));
    }
    Json::Array(v)
}

fn check_type_ref(m: &Module, path: &str, ty: &TypeRef) -> Result<(), SchemaLoadError> {
    if let TypeRef::Named(n) = ty {
        if m.named(n).is_none() {
            return Err(SchemaLoadError::UnknownType {
                path: path.to_owned(),
                ty: n.clone(),
            });
        }
    }
    Ok(())
}

fn bad(path: &str, f: &Field, what: &str) -> SchemaLoadError {
    SchemaLoadError::BadField {
        path: format!("{path} field {}", f.name),
        what: what.to_owned(),
    }
}

fn check_fields(
    m: &Module,
    path: &str,
    fields: &[Field],
    is_union: bool,
) -> Result<(), SchemaLoadError> {
    for (i, f) in fields.iter().enumerate() {
        check_type_ref(m, &format!("{path} field {}", f.name), &f.ty)?;
        match (&f.ty, &f.array) {
            (TypeRef::String, ArrayKind::None | ArrayKind::Counted(_)) => {
                return Err(bad(path, f, "a string needs [N] or [0]"));
            }
            (_, ArrayKind::Counted(lf)) => {
                let Some(len_field) = fields[..i].iter().find(|g| &g.name == lf) else {
                    return Err(bad(
                        path,
                        f,
                        &format!("length field `{lf}` is not an earlier field"),
                    ));
                };
                let is_int = len_field.array == ArrayKind::None
                    && match &len_field.ty {
                        TypeRef::Base(b) => b.is_integer(),
                        TypeRef::Named(n) => matches!(
                            resolve_alias(m, n, 0),
                            Some(TypeRef::Base(b)) if b.is_integer()
                        ),
                        TypeRef::String => false,
                    };
                if !is_int {
                    return Err(bad(
                        path,
                        f,
                        &format!("length field `{lf}` is not an integer"),
                    ));
                }
            }
            (TypeRef::String, ArrayKind::Fixed(_) | ArrayKind::Unsized) => {}
            (_, ArrayKind::Unsized) if i + 1 != fields.len() => {
                return Err(bad(path, f, "an array without length field must be last"));
            }
            _ => {}
        }
        if f.host_order {
            let scalar = match &f.ty {
                TypeRef::Base(_) => true,
                TypeRef::Named(n) => matches!(resolve_alias(m, n, 0), Some(TypeRef::Base(_))),
                TypeRef::String => false,
            };
            if !scalar {
                return Err(bad(path, f, "host_order applies to scalar fields only"));
            }
        }
        if is_union && field_fixed_size(m, f).is_none() {
            return Err(bad(path, f, "a union member must have a fixed size"));
        }
    }
    Ok(())
}

/// Follows an alias without length to its target (a chain of them, bounded).
pub fn resolve_alias(m: &dyn TypeLookup, name: &str, depth: usize) -> Option<TypeRef> {
    if depth > MAX_TYPE_DEPTH {
        return None;
    }
    match m.named(name)? {
        NamedType::Alias(a) if a.length.is_none() => match &a.ty {
            TypeRef::Named(n) => resolve_alias(m, n, depth + 1),
            other => Some(other.clone()),
        },
        _ => Some(TypeRef::Named(name.to_owned())),
    }
}

fn type_depth(m: &dyn TypeLookup, name: &str, depth: usize) -> Option<usize> {
    if depth > MAX_TYPE_DEPTH {
        return None;
    }
    let fields_depth = |fields: &[Field]| {
        let mut d = 0;
        for f in fields {
            if let TypeRef::Named(n) = &f.ty {
                d = d.max(type_depth(m, n, depth + 1)? + 1);
            }
        }
        Some(d)
    };
    match m.named(name)? {
        NamedType::Struct(s) => fields_depth(&s.fields),
        NamedType::Union(u) => fields_depth(&u.fields),
        NamedType::Enum(_) | NamedType::EnumFlags(_) => Some(0),
        NamedType::Alias(a) => match &a.ty {
            TypeRef::Named(n) => Some(type_depth(m, n, depth + 1)? + 1),
            _ => Some(0),
        },
    }
}

/// Wire size of one value of `ty`, or `None` if it varies (contains a variable string or
/// array) or cannot be resolved.
pub fn fixed_size(m: &dyn TypeLookup, ty: &TypeRef) -> Option<usize> {
    fixed_size_at(m, ty, 0)
}

fn fixed_size_at(m: &dyn TypeLookup, ty: &TypeRef, depth: usize) -> Option<usize> {
    if depth > MAX_TYPE_DEPTH {
        return None;
    }
    match ty {
        TypeRef::Base(b) => Some(b.size()),
        TypeRef::String => None,
        TypeRef::Named(n) => match m.named(n)? {
            NamedType::Struct(s) => {
                let mut total = 0usize;
                for f in &s.fields {
                    total = total.checked_add(field_fixed_size_at(m, f, depth + 1)?)?;
                }
                Some(total)
            }
            NamedType::Union(u) => {
                let mut max = 0;
                for f in &u.fields {
                    max = max.max(field_fixed_size_at(m, f, depth + 1)?);
                }
                Some(max)
            }
            NamedType::Enum(e) | NamedType::EnumFlags(e) => Some(e.underlying.size()),
            NamedType::Alias(a) => {
                let one = fixed_size_at(m, &a.ty, depth + 1)?;
                one.checked_mul(a.length.unwrap_or(1) as usize)
            }
        },
    }
}

/// Wire size of a field, or `None` if it varies.
pub fn field_fixed_size(m: &dyn TypeLookup, f: &Field) -> Option<usize> {
    field_fixed_size_at(m, f, 0)
}

fn field_fixed_size_at(m: &dyn TypeLookup, f: &Field, depth: usize) -> Option<usize> {
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => Some(*n as usize),
        (_, ArrayKind::None) => fixed_size_at(m, &f.ty, depth),
        (_, ArrayKind::Fixed(n)) => fixed_size_at(m, &f.ty, depth)?.checked_mul(*n as usize),
        (_, ArrayKind::Counted(_) | ArrayKind::Unsized) => None,
    }
}

/// Smallest wire size of one value of `ty` (variable parts empty).
pub fn min_size(m: &dyn TypeLookup, ty: &TypeRef) -> usize {
    min_size_at(m, ty, 0)
}

fn min_size_at(m: &dyn TypeLookup, ty: &TypeRef, depth: usize) -> usize {
    if depth > MAX_TYPE_DEPTH {
        return 0;
    }
    match ty {
        TypeRef::Base(b) => b.size(),
        TypeRef::String => 0,
        TypeRef::Named(n) => match m.named(n) {
            None => 0,
            Some(NamedType::Struct(s)) => s.fields.iter().fold(0usize, |acc, f| {
                acc.saturating_add(field_min_size_at(m, f, depth + 1))
            }),
            Some(NamedType::Union(_)) => fixed_size_at(m, ty, depth).unwrap_or(0),
            Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => e.underlying.size(),
            Some(NamedType::Alias(a)) => {
                min_size_at(m, &a.ty, depth + 1).saturating_mul(a.length.unwrap_or(1) as usize)
            }
        },
    }
}

/// Smallest wire size of a field (variable parts empty; a variable string is its u32 length).
pub fn field_min_size(m: &dyn TypeLookup, f: &Field) -> usize {
    field_min_size_at(m, f, 0)
}

fn field_min_size_at(m: &dyn TypeLookup, f: &Field, depth: usize) -> usize {
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => *n as usize,
        (TypeRef::String, _) => 4,
        (_, ArrayKind::None) => min_size_at(m, &f.ty, depth),
        (_, ArrayKind::Fixed(n)) => min_size_at(m, &f.ty, depth).saturating_mul(*n as usize),
        (_, ArrayKind::Counted(_) | ArrayKind::Unsized) => 0,
    }
}

/// The fixed part of a message: `_vl_msg_id` plus every field with its variable parts empty.
/// A message shorter than this is rejected before anything else is read.
pub fn message_min_size(m: &dyn TypeLookup, msg: &MessageDef) -> usize {
    msg.fields
        .iter()
        .fold(2usize, |acc, f| acc.saturating_add(field_min_size(m, f)))
}

/// Offset of the `context` field when every field before it has a fixed size.
pub fn field_offset(m: &dyn TypeLookup, msg: &MessageDef, name: &str) -> Option<usize> {
    let mut off = 2usize;
    for f in &msg.fields {
        if f.name == name {
            return Some(off);
        }
        off = off.checked_add(field_fixed_size(m, f)?)?;
    }
    None
}

/// The canonical signature of a message, from which our CRCs are computed:
/// `name(field;field;...)`, each field `type name shape` with named types expanded.
///
/// ```text
/// memfd_segment_create(u32 client_index;u32 context;u64@host requested_size)
/// ```
pub fn message_signature(m: &dyn TypeLookup, msg: &MessageDef) -> String {
    let mut s = String::new();
    s.push_str(&msg.name);
    write_fields_signature(m, &msg.fields, &mut s, 0);
    s
}

fn write_fields_signature(m: &dyn TypeLookup, fields: &[Field], s: &mut String, depth: usize) {
    s.push('(');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        write_type_signature(m, &f.ty, s, depth);
        if f.host_order {
            s.push_str("@host");
        }
        s.push(' ');
        s.push_str(&f.name);
        match &f.array {
            ArrayKind::None => {}
            ArrayKind::Fixed(n) => s.push_str(&format!("[{n}]")),
            ArrayKind::Counted(lf) => s.push_str(&format!("[{lf}]")),
            ArrayKind::Unsized => s.push_str("[]"),
        }
    }
    s.push(')');
}

fn write_type_signature(m: &dyn TypeLookup, ty: &TypeRef, s: &mut String, depth: usize) {
    let TypeRef::Named(n) = ty else {
        s.push_str(&ty.api_name());
        return;
    };
    if depth > MAX_TYPE_DEPTH {
        s.push_str("...");
        return;
    }
    match m.named(n) {
        None => s.push_str(&format!("?{n}")),
        Some(NamedType::Struct(t)) => {
            s.push_str(&format!("struct {n}"));
            write_fields_signature(m, &t.fields, s, depth + 1);
        }
        Some(NamedType::Union(u)) => {
            s.push_str(&format!("union {n}"));
            write_fields_signature(m, &u.fields, s, depth + 1);
        }
        Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
            let kind = if matches!(m.named(n), Some(NamedType::Enum(_))) {
                "enum"
            } else {
                "enumflag"
            };
            s.push_str(&format!("{kind} {n}:{}(", e.underlying.name()));
            for (i, (vn, v)) in e.values.iter().enumerate() {
                if i > 0 {
                    s.push(';');
                }
                s.push_str(&format!("{vn}={v}"));
            }
            s.push(')');
        }
        Some(NamedType::Alias(a)) => {
            s.push_str(&format!("alias {n}="));
            write_type_signature(m, &a.ty, s, depth + 1);
            if let Some(l) = a.length {
                s.push_str(&format!("[{l}]"));
            }
        }
    }
}

/// Our CRC of a message: CRC-32 of [`message_signature`].
pub fn message_crc(m: &dyn TypeLookup, msg: &MessageDef) -> u32 {
    crc32(message_signature(m, msg).as_bytes())
}

/// Our `vl_api_version` of a module: CRC-32 of its message signatures, one per line.
pub fn module_crc(m: &Module) -> u32 {
    let mut s = String::new();
    for msg in &m.messages {
        s.push_str(&message_signature(m, msg));
        s.push('\n');
    }
    crc32(s.as_bytes())
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = crc32_table();

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib and Python's `binascii.crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// A set of modules with indexes over their types and messages, for the dynamic codec.
///
/// Type names are global across the set, as in vpp_papi: the first module that defines a name
/// wins (vppapigen copies shared types into every file, so repeats are identical).
#[derive(Debug, Clone, Default)]
pub struct Schema {
    modules: Vec<Module>,
    types: HashMap<String, (usize, TypeSlot)>,
    by_name_crc: HashMap<String, (usize, usize)>,
    by_name: HashMap<String, (usize, usize)>,
}

#[derive(Debug, Clone, Copy)]
enum TypeSlot {
    Struct(usize),
    Union(usize),
    Enum(usize),
    EnumFlags(usize),
    Alias(usize),
}

impl TypeLookup for Schema {
    fn named(&self, name: &str) -> Option<NamedType<'_>> {
        let (mi, slot) = *self.types.get(name)?;
        let m = &self.modules[mi];
        Some(match slot {
            TypeSlot::Struct(i) => NamedType::Struct(&m.types[i]),
            TypeSlot::Union(i) => NamedType::Union(&m.unions[i]),
            TypeSlot::Enum(i) => NamedType::Enum(&m.enums[i]),
            TypeSlot::EnumFlags(i) => NamedType::EnumFlags(&m.enumflags[i]),
            TypeSlot::Alias(i) => NamedType::Alias(&m.aliases[i]),
        })
    }
}

impl Schema {
    /// An empty set.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// Adds a (checked) module; returns its index.
    pub fn push(&mut self, m: Module) -> usize {
        let mi = self.modules.len();
        let slots = (m.types.iter().enumerate())
            .map(|(i, t)| (&t.name, TypeSlot::Struct(i)))
            .chain((m.unions.iter().enumerate()).map(|(i, t)| (&t.name, TypeSlot::Union(i))))
            .chain((m.enums.iter().enumerate()).map(|(i, t)| (&t.name, TypeSlot::Enum(i))))
            .chain((m.enumflags.iter().enumerate()).map(|(i, t)| (&t.name, TypeSlot::EnumFlags(i))))
            .chain((m.aliases.iter().enumerate()).map(|(i, t)| (&t.name, TypeSlot::Alias(i))));
        for (name, slot) in slots {
            self.types.entry(name.clone()).or_insert((mi, slot));
        }
        for (i, msg) in m.messages.iter().enumerate() {
            self.by_name_crc.entry(msg.name_crc()).or_insert((mi, i));
            self.by_name.entry(msg.name.clone()).or_insert((mi, i));
        }
        self.modules.push(m);
        mi
    }

    /// Reads a JSON array of `.api.json` documents, as `get_api_json` returns. Documents carry
    /// no names, so module `i` is named `module{i}`.
    pub fn from_api_json_array(text: &str) -> Result<Schema, SchemaLoadError> {
        let doc = json::parse(text).map_err(SchemaLoadError::Json)?;
        let docs = doc
            .as_array()
            .ok_or_else(|| shape("get_api_json", "a list of documents"))?;
        let mut s = Schema::new();
        for (i, d) in docs.iter().enumerate() {
            s.push(Module::from_json(&format!("module{i}"), d)?);
        }
        Ok(s)
    }

    /// The modules, in the order they were added.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// A message by its `name_crc` key.
    pub fn message_by_name_crc(&self, name_crc: &str) -> Option<&MessageDef> {
        let (mi, i) = *self.by_name_crc.get(name_crc)?;
        Some(&self.modules[mi].messages[i])
    }

    /// A message by name (the first module's, if several define it).
    pub fn message(&self, name: &str) -> Option<&MessageDef> {
        let (mi, i) = *self.by_name.get(name)?;
        Some(&self.modules[mi].messages[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_zlib_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    const DOC: &str = r#"{
        "types": [["pair", ["u16", "a"], ["vl_api_color_t", "c"]],
                  ["holder", ["u8", "n"], ["vl_api_pair_t", "items", 0, "n"]]],
        "messages": [
            ["msg_a", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
             ["u64", "size", {"host_order": true}], ["string", "name", 16],
             ["vl_api_holder_t", "h"], {"crc": "0x12345678", "options": {"deprecated": null}}],
            ["msg_b", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"],
             ["string", "text", 0]]
        ],
        "unions": [["u", ["vl_api_addr4_t", "ip4"], ["u8", "ip6", 16]]],
        "enums": [["color", ["RED", 1], ["BLUE", 2], {"enumtype": "u8"}]],
        "enumflags": [["flags", ["F_A", 1], ["F_B", 4]]],
        "aliases": {"addr4": {"type": "u8", "length": 4}, "index": {"type": "u32"}},
        "services": {"msg_a": {"reply": "msg_b", "stream": true}},
        "options": {"version": "1.2.3"},
        "vl_api_version": "0xdeadbeef"
    }"#;

    #[test]
    fn reads_every_section() {
        let m = Module::from_json_text("t", DOC).unwrap();
        assert_eq!(
            m.version,
            Version {
                major: 1,
                minor: 2,
                patch: 3
            }
        );
        assert_eq!(m.vl_api_version, 0xdead_beef);
        let a = m.message("msg_a").unwrap();
        assert_eq!(a.crc, 0x1234_5678);
        assert_eq!(a.name_crc(), "msg_a_12345678");
        assert_eq!(a.fields.len(), 5);
        assert!(a.fields[2].host_order);
        assert!(a.fields[2].options.is_empty());
        assert!(a.fields[3].is_fixed_string());
        assert_eq!(a.fields[4].ty, TypeRef::Named("holder".into()));
        let b = m.message("msg_b").unwrap();
        assert!(b.fields[2].is_var_string());
        assert_eq!(b.crc, message_crc(&m, b), "a missing crc is computed");
        assert_eq!(m.enums[0].underlying, BaseType::U8);
        assert_eq!(m.enumflags[0].underlying, BaseType::U32);
        assert_eq!(m.aliases[0].length, Some(4));
        assert_eq!(m.services[0].reply, "msg_b");
        assert!(m.services[0].stream);
        assert_eq!(fixed_size(&m, &TypeRef::Named("u".into())), Some(16));
        assert_eq!(fixed_size(&m, &TypeRef::Named("pair".into())), Some(3));
        assert_eq!(fixed_size(&m, &TypeRef::Named("holder".into())), None);
        assert_eq!(min_size(&m, &TypeRef::Named("holder".into())), 1);
        assert_eq!(message_min_size(&m, a), 2 + 4 + 4 + 8 + 16 + 1);
        assert_eq!(field_offset(&m, a, "context"), Some(6));
        assert_eq!(field_offset(&m, b, "retval"), Some(6));
    }

    #[test]
    fn an_exact_repeat_of_a_type_is_one_type_and_a_different_one_is_refused() {
        // As in VPP's flow.api document, which lists imported types twice.
        let repeated = r#"{
            "types": [["address", ["u8", "af"], ["u8", "un", 16]],
                      ["address", ["u8", "af"], ["u8", "un", 16]]],
            "enums": [["af", ["IP4", 0], ["IP6", 1], {"enumtype": "u8"}],
                      ["af", ["IP4", 0], ["IP6", 1], {"enumtype": "u8"}]],
            "messages": [["m", ["u16", "_vl_msg_id"], ["u32", "context"],
                          ["vl_api_address_t", "a"]]]
        }"#;
        let m = Module::from_json_text("flow", repeated).unwrap();
        assert_eq!(m.types.len(), 1);
        assert_eq!(m.enums.len(), 1);
        let conflicting = repeated.replacen(r#"["u8", "un", 16]"#, r#"["u8", "un", 4]"#, 1);
        assert!(matches!(
            Module::from_json_text("flow", &conflicting),
            Err(SchemaLoadError::Duplicate { kind: "type", .. })
        ));
    }

    #[test]
    fn writes_vpp_shape_and_reads_back() {
        let m = Module::from_json_text("t", DOC).unwrap();
        let out = m.to_json(WriteOptions::default()).to_compact();
        assert!(!out.contains("host_order"), "overlay stripped");
        assert!(out.contains(r#"["msg_a",["u16","_vl_msg_id"],["u32","client_index"]"#));
        assert!(out.contains(r#"["vl_api_holder_t","h"]"#));
        assert!(out.contains(r#"["vl_api_pair_t","items",0,"n"]"#));
        assert!(out.contains(r#"["string","text",0]"#));
        assert!(out.contains(r#"{"crc":"0x12345678","options":{"deprecated":null}}"#));
        assert!(out.contains(r#""aliases":{"addr4":{"type":"u8","length":4}"#));
        let mut back = Module::from_json_text("t", &out).unwrap();
        assert!(!back.messages[0].fields[2].host_order);
        back.messages[0].fields[2].host_order = true;
        assert_eq!(back, m);
        let with = m
            .to_json(WriteOptions {
                host_order_overlay: true,
            })
            .to_compact();
        assert_eq!(Module::from_json_text("t", &with).unwrap(), m);
    }

    #[test]
    fn signature_is_canonical_and_host_order_changes_the_crc() {
        let m = Module::from_json_text("t", DOC).unwrap();
        let a = m.message("msg_a").unwrap();
        assert_eq!(
            message_signature(&m, a),
            "msg_a(u32 client_index;u32 context;u64@host size;string name[16];\
             struct holder(u8 n;struct pair(u16 a;enum color:u8(RED=1;BLUE=2) c) items[n]) h)"
        );
        let mut net = a.clone();
        net.fields[2].host_order = false;
        assert_ne!(message_crc(&m, &net), message_crc(&m, a));
    }

    fn err(doc: &str) -> SchemaLoadError {
        Module::from_json_text("t", doc).unwrap_err()
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(err("[1"), SchemaLoadError::Json(_)));
        assert!(matches!(err("[]"), SchemaLoadError::Shape { .. }));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u32"]]]}"#),
            SchemaLoadError::Shape { .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["vl_api_nope_t", "x"]]]}"#),
            SchemaLoadError::UnknownType { ty, .. } if ty == "nope"
        ));
        assert!(matches!(
            err(r#"{"types": [["a", ["vl_api_b_t", "x"]], ["b", ["vl_api_a_t", "y"]]]}"#),
            SchemaLoadError::Recursive { .. }
        ));
        assert!(matches!(
            err(r#"{"types": [["a", ["vl_api_a_t", "x", 0, "n"], ["u8", "n"]]]}"#),
            SchemaLoadError::BadField { .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u8", "x", 0, "nope"]]]}"#),
            SchemaLoadError::BadField { .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["string", "s"], ["u8", "n"]]]}"#),
            SchemaLoadError::BadField { .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u8", "rest", 0], ["u8", "n"]]]}"#),
            SchemaLoadError::BadField { .. }
        ));
        assert!(matches!(
            err(r#"{"unions": [["u", ["string", "s", 0]]]}"#),
            SchemaLoadError::BadField { .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u8", "a"]], ["m", ["u8", "b"]]]}"#),
            SchemaLoadError::Duplicate {
                kind: "message",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u8", "a"], ["u8", "a"]]]}"#),
            SchemaLoadError::Duplicate { kind: "field", .. }
        ));
        assert!(matches!(
            err(r#"{"messages": [["m", ["u8", "a"], {"crc": "zz"}]]}"#),
            SchemaLoadError::Shape { .. }
        ));
        assert!(matches!(
            err(r#"{"options": {"version": "1.x"}}"#),
            SchemaLoadError::Shape { .. }
        ));
        let e = err(r#"{"messages": [["m", ["vl_api_nope_t", "x"]]]}"#);
        assert_eq!(
            e.to_string(),
            "api json: message m field x: unknown type `nope`"
        );
    }

    #[test]
    fn accepts_what_vppapigen_writes() {
        // Keys we do not use, comments, per-field defaults, `_get` services with `stream_msg`,
        // events, and an alias of a named type.
        let m = Module::from_json_text(
            "t",
            r#"{"types": [["prefix", ["u8", "len"]]],
                "messages": [
                  ["x_get", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
                   ["u32", "cursor"], {"crc": "0x07c75b6b", "comment": "/* ... */"}],
                  ["x_get_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"],
                   ["u32", "cursor"], {"crc": "0x53b48f5d"}],
                  ["x_details", ["u16", "_vl_msg_id"], ["u32", "context"],
                   ["vl_api_index_t", "sw_if_index", {"default": 4294967295}],
                   ["vl_api_pfx_t", "p"], ["string", "tag", 64, {"limit": 63}],
                   {"crc": "0x1d5d0d59"}]],
                "services": {"x_get": {"reply": "x_get_reply", "stream": true,
                                       "stream_msg": "x_details", "events": ["x_details"]}},
                "aliases": {"index": {"type": "u32"}, "pfx": {"type": "vl_api_prefix_t"}},
                "imports": ["vnet/ip/ip_types.api"], "counters": [], "paths": [],
                "options": {"version": "3.2.2", "status": "in_progress"},
                "vl_api_version": "0x12345678"}"#,
        )
        .unwrap();
        let d = m.message("x_details").unwrap();
        assert_eq!(d.fields[1].options[0].0, "default");
        assert_eq!(d.fields[3].options[0].0, "limit");
        assert_eq!(fixed_size(&m, &TypeRef::Named("pfx".into())), Some(1));
        let svc = &m.services[0];
        assert_eq!(svc.stream_msg.as_deref(), Some("x_details"));
        assert_eq!(svc.events, ["x_details"]);
        assert_eq!(m.options[0].0, "status");
        let out = m.to_json(WriteOptions::default()).to_compact();
        assert!(out.contains(r#"["vl_api_index_t","sw_if_index",{"default":4294967295}]"#));
        assert!(out.contains(r#""options":{"version":"3.2.2","status":"in_progress"}"#));
        assert!(out.contains(r#""stream_msg":"x_details","events":["x_details"]"#));
        assert_eq!(Module::from_json_text("t", &out).unwrap(), m);
    }

    #[test]
    fn schema_indexes_types_across_modules() {
        let m = Module::from_json_text("t", DOC).unwrap();
        let mut s = Schema::new();
        s.push(m);
        assert!(matches!(s.named("color"), Some(NamedType::Enum(_))));
        assert!(matches!(s.named("flags"), Some(NamedType::EnumFlags(_))));
        assert!(matches!(s.named("addr4"), Some(NamedType::Alias(_))));
        assert!(s.message_by_name_crc("msg_a_12345678").is_some());
        assert!(s.message("msg_b").is_some());
        let arr = format!("[{DOC}]");
        let s2 = Schema::from_api_json_array(&arr).unwrap();
        assert_eq!(s2.modules().len(), 1);
    }
}
