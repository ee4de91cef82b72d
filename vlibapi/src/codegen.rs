//! The build-time generator: Rust types and codecs from a `.api.json` document.
//!
//! vlibapi's own `build.rs` runs it over `vlibapi/api/*.api.json`; a plugin crate runs it from
//! its `build.rs` with `[build-dependencies] vlibapi`:
//!
//! ```no_run
//! // build.rs of a plugin crate
//! let text = std::fs::read_to_string("api/acl.api.json").unwrap();
//! let code = vlibapi::codegen::generate(&text, &vlibapi::codegen::CodegenOptions::new("acl"))
//!     .unwrap();
//! let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("acl.rs");
//! std::fs::write(out, code).unwrap();
//! // and in the crate (generated code is not written for clippy, and a private module would
//! // warn about its unused and unreachable `pub` items):
//! // #[allow(clippy::all, dead_code, unreachable_pub)]
//! // pub mod acl { include!(concat!(env!("OUT_DIR"), "/acl.rs")); }
//! ```
//!
//! Generated per module:
//! * per message: a struct (no `_vl_msg_id` field), `impl Message` (name, CRC, `name_crc`,
//!   encode/decode, `encoded_len`, context/client_index/retval accessors) and `Default`;
//! * per struct type: a struct with `impl Wire`; per enum/enumflag: a newtype over its integer
//!   with associated consts (unknown values survive decoding); per union: a byte-array newtype
//!   with typed accessors; per alias: a `type` alias;
//! * `MODULE_NAME`, `VERSION`, `MESSAGES` (name_crc keys in ID order), `schema()`, which
//!   returns the [`Module`] model for the message table, the dynamic codec and `get_api_json`,
//!   and `visit_messages()`, which hands every message type to a `wire::MessageVisitor`.
//!
//! Count fields of variable arrays stay in the structs; encoding writes them from the arrays'
//! lengths. This file is also compiled into `build.rs` (through `#[path]`).

use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;

use crate::json::{Json, Number};
use crate::schema::{
    self, AliasDef, ArrayKind, BaseType, EnumDef, Field, MessageDef, Module, NamedType,
    SchemaLoadError, StructDef, TypeLookup, TypeRef, UnionDef,
};

/// Settings of one generator run.
#[derive(Debug, Clone)]
pub struct CodegenOptions {
    /// The module's name (the `.api.json` file stem).
    pub module_name: String,
    /// How generated code names this crate (`::vlibapi`).
    pub crate_path: String,
}

impl CodegenOptions {
    /// Options for module `module_name`, referring to vlibapi as `::vlibapi`.
    pub fn new(module_name: &str) -> CodegenOptions {
        CodegenOptions {
            module_name: module_name.to_owned(),
            crate_path: "::vlibapi".to_owned(),
        }
    }
}

/// Why code could not be generated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CodegenError {
    /// The document is not a valid API definition.
    Schema(SchemaLoadError),
    /// Two definitions map to the same Rust name.
    NameClash {
        /// The Rust name.
        rust_name: String,
    },
    /// An enum value does not fit its underlying type.
    EnumValueOutOfRange {
        /// The enum.
        name: String,
        /// The value's name.
        value: String,
    },
}

impl fmt::Display for CodegenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodegenError::Schema(e) => write!(f, "codegen: {e}"),
            CodegenError::NameClash { rust_name } => {
                write!(
                    f,
                    "codegen: two definitions are both named `{rust_name}` in rust"
                )
            }
            CodegenError::EnumValueOutOfRange { name, value } => {
                write!(
                    f,
                    "codegen: value `{value}` of enum `{name}` does not fit its type"
                )
            }
        }
    }
}

impl std::error::Error for CodegenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodegenError::Schema(e) => Some(e),
            _ => None,
        }
    }
}

/// Generates Rust source for one `.api.json` document.
pub fn generate(json_text: &str, opts: &CodegenOptions) -> Result<String, CodegenError> {
    let m = Module::from_json_text(&opts.module_name, json_text).map_err(CodegenError::Schema)?;
    generate_module(&m, opts)
}

/// Generates Rust source for a checked module.
pub fn generate_module(m: &Module, opts: &CodegenOptions) -> Result<String, CodegenError> {
    let mut names = HashSet::new();
    let all = m
        .types
        .iter()
        .map(|t| &t.name)
        .chain(m.unions.iter().map(|t| &t.name))
        .chain(m.enums.iter().map(|t| &t.name))
        .chain(m.enumflags.iter().map(|t| &t.name))
        .chain(m.aliases.iter().map(|t| &t.name))
        .chain(m.messages.iter().map(|t| &t.name));
    for n in all {
        let rust_name = camel(n);
        if !names.insert(rust_name.clone()) {
            return Err(CodegenError::NameClash { rust_name });
        }
    }
    let g = Gen {
        m,
        c: opts.crate_path.as_str(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by vlibapi::codegen from the `{}` API definition. Do not edit.\n",
        m.name
    );
    let _ = writeln!(out, "/// The module's name.");
    let _ = writeln!(out, "pub const MODULE_NAME: &str = {:?};", m.name);
    let _ = writeln!(out, "/// The module's version (`options.version`).");
    let _ = writeln!(
        out,
        "pub const VERSION: (u32, u32, u32) = ({}, {}, {});",
        m.version.major, m.version.minor, m.version.patch
    );
    let _ = writeln!(out, "/// The `name_crc` key of every message, in ID order.");
    let _ = write!(out, "pub const MESSAGES: &[&str] = &[");
    for msg in &m.messages {
        let _ = write!(out, "{:?}, ", msg.name_crc());
    }
    let _ = writeln!(out, "];\n");
    for a in &m.aliases {
        g.alias(&mut out, a);
    }
    for e in &m.enums {
        g.enumeration(&mut out, e, false)?;
    }
    for e in &m.enumflags {
        g.enumeration(&mut out, e, true)?;
    }
    for u in &m.unions {
        g.union(&mut out, u);
    }
    for t in &m.types {
        g.structure(&mut out, t);
    }
    for msg in &m.messages {
        g.message(&mut out, msg);
    }
    g.schema_fn(&mut out);
    let c = g.c;
    let _ = writeln!(
        out,
        "\n/// Calls `v.visit::<M>()` for every message type of the module, in ID order."
    );
    let _ = writeln!(
        out,
        "pub fn visit_messages<V: {c}::wire::MessageVisitor>(v: &mut V) {{"
    );
    if m.messages.is_empty() {
        let _ = writeln!(out, "    let _ = v;");
    }
    for msg in &m.messages {
        let _ = writeln!(out, "    v.visit::<{}>();", camel(&msg.name));
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// `snake_case` to `CamelCase`, as generated type names.
pub fn camel(name: &str) -> String {
    let mut s = String::new();
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            s.extend(c.to_uppercase());
            s.push_str(cs.as_str());
        }
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'T');
    }
    if s == "Self" {
        s.push('_');
    }
    s
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// A field name as a Rust identifier (`type` becomes `r#type`).
pub fn ident(name: &str) -> String {
    if matches!(name, "self" | "Self" | "super" | "crate" | "_") {
        format!("{name}_")
    } else if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_owned()
    }
}

/// A type as the encoder sees it: aliases expanded.
#[derive(Debug, Clone)]
enum Ty {
    Base(BaseType, bool),
    /// A generated type implementing `Wire` (struct, union, enum, enumflag), with its fixed
    /// size if it has one and its minimum size.
    Wire(String, Option<usize>, usize),
    Array(Box<Ty>, u32),
}

impl Ty {
    fn fixed(&self) -> Option<usize> {
        match self {
            Ty::Base(b, _) => Some(b.size()),
            Ty::Wire(_, f, _) => *f,
            Ty::Array(t, n) => t.fixed()?.checked_mul(*n as usize),
        }
    }

    fn min(&self) -> usize {
        match self {
            Ty::Base(b, _) => b.size(),
            Ty::Wire(_, _, m) => *m,
            Ty::Array(t, n) => t.min().saturating_mul(*n as usize),
        }
    }
}

/// A field of a flat (all fixed, scalar) struct.
#[derive(Debug, Clone)]
enum Flat {
    Base(BaseType, bool),
    /// An enum or enumflag newtype, with its underlying type.
    Enum(String, BaseType),
    Bytes(usize),
}

struct Gen<'a> {
    m: &'a Module,
    c: &'a str,
}

impl Gen<'_> {
    fn rust_type(&self, ty: &TypeRef) -> String {
        match ty {
            TypeRef::Base(b) => match b {
                BaseType::Bool => "bool".to_owned(),
                b => b.name().to_owned(),
            },
            TypeRef::String => "::std::string::String".to_owned(),
            TypeRef::Named(n) => camel(n),
        }
    }

    fn field_type(&self, f: &Field) -> String {
        let t = self.rust_type(&f.ty);
        match (&f.ty, &f.array) {
            (TypeRef::String, _) => t,
            (_, ArrayKind::None) => t,
            (_, ArrayKind::Fixed(n)) => format!("[{t}; {n}]"),
            (_, ArrayKind::Counted(_) | ArrayKind::Unsized) => format!("::std::vec::Vec<{t}>"),
        }
    }

    /// The encoder's view of a (non-string) type.
    fn ty(&self, ty: &TypeRef, host: bool) -> Ty {
        self.ty_at(ty, host, 0)
    }

    fn ty_at(&self, ty: &TypeRef, host: bool, depth: usize) -> Ty {
        match ty {
            TypeRef::Base(b) => Ty::Base(*b, host),
            // Strings never reach here: `check` rejects string aliases and union members are
            // handled at field level.
            TypeRef::String => Ty::Base(BaseType::U8, host),
            TypeRef::Named(n) => match self.m.named(n) {
                Some(NamedType::Alias(a)) if depth < schema::MAX_TYPE_DEPTH => {
                    let inner = self.ty_at(&a.ty, host, depth + 1);
                    match a.length {
                        Some(l) => Ty::Array(Box::new(inner), l),
                        None => inner,
                    }
                }
                _ => Ty::Wire(
                    camel(n),
                    schema::fixed_size(self.m, ty),
                    schema::min_size(self.m, ty),
                ),
            },
        }
    }

    fn default_of(&self, t: &Ty) -> String {
        match t {
            Ty::Base(BaseType::Bool, _) => "false".to_owned(),
            Ty::Base(BaseType::F64, _) => "0.0".to_owned(),
            Ty::Base(..) => "0".to_owned(),
            Ty::Wire(n, ..) => format!("<{n} as ::core::default::Default>::default()"),
            Ty::Array(inner, n) => match **inner {
                Ty::Base(BaseType::U8, _) => format!("[0u8; {n}]"),
                _ => format!("::core::array::from_fn(|_| {})", self.default_of(inner)),
            },
        }
    }

    fn field_default(&self, f: &Field) -> String {
        match (&f.ty, &f.array) {
            (TypeRef::String, _) => "::std::string::String::new()".to_owned(),
            (_, ArrayKind::None) => self.default_of(&self.ty(&f.ty, f.host_order)),
            (_, ArrayKind::Fixed(n)) => {
                self.default_of(&Ty::Array(Box::new(self.ty(&f.ty, f.host_order)), *n))
            }
            (_, _) => "::std::vec::Vec::new()".to_owned(),
        }
    }

    /// Statements appending `e` (an expression of type `&T`) to `out`.
    fn put(&self, t: &Ty, e: &str, depth: usize) -> String {
        let c = self.c;
        match t {
            Ty::Base(BaseType::U8, _) => format!("out.push(*{e});"),
            Ty::Base(BaseType::I8, _) => format!("out.push(*{e} as u8);"),
            Ty::Base(BaseType::Bool, _) => format!("out.push(u8::from(*{e}));"),
            Ty::Base(_, host) => {
                let f = if *host { "to_ne_bytes" } else { "to_be_bytes" };
                format!("out.extend_from_slice(&(*{e}).{f}());")
            }
            Ty::Wire(..) => format!("{c}::wire::Wire::put({e}, out)?;"),
            Ty::Array(inner, _) => match **inner {
                Ty::Base(BaseType::U8, _) => format!("out.extend_from_slice(&({e})[..]);"),
                _ => {
                    let v = format!("v{depth}");
                    format!(
                        "for {v} in ({e}).iter() {{ {} }}",
                        self.put(inner, &v, depth + 1)
                    )
                }
            },
        }
    }

    /// An expression reading one `T` from `r`.
    fn get(&self, t: &Ty, field: &str) -> String {
        let c = self.c;
        match t {
            Ty::Base(BaseType::U8, _) => format!("r.take::<1>({field:?})?[0]"),
            Ty::Base(BaseType::I8, _) => format!("r.take::<1>({field:?})?[0] as i8"),
            Ty::Base(BaseType::Bool, _) => format!("r.take::<1>({field:?})?[0] != 0"),
            Ty::Base(b, host) => {
                let f = if *host {
                    "from_ne_bytes"
                } else {
                    "from_be_bytes"
                };
                format!("{}::{f}(r.take::<{}>({field:?})?)", b.name(), b.size())
            }
            Ty::Wire(n, ..) => format!("<{n} as {c}::wire::Wire>::get(r)?"),
            Ty::Array(inner, n) => match **inner {
                Ty::Base(BaseType::U8, _) => format!("r.take::<{n}>({field:?})?"),
                _ => format!(
                    "{{ let mut a = {}; for slot in a.iter_mut() {{ *slot = {}; }} a }}",
                    self.default_of(t),
                    self.get(inner, field)
                ),
            },
        }
    }

    /// An expression: the encoded length of `e` (of type `&T`).
    fn len(&self, t: &Ty, e: &str, depth: usize) -> String {
        if let Some(n) = t.fixed() {
            return n.to_string();
        }
        match t {
            Ty::Array(inner, _) => {
                let v = format!("v{depth}");
                format!(
                    "({e}).iter().map(|{v}| {}).sum::<usize>()",
                    self.len(inner, &v, depth + 1)
                )
            }
            _ => format!("{}::wire::Wire::wire_len({e})", self.c),
        }
    }

    /// The arrays counted by field `name` among `fields`.
    fn counted_by<'f>(fields: &'f [Field], name: &str) -> Vec<&'f Field> {
        fields
            .iter()
            .filter(|f| matches!(&f.array, ArrayKind::Counted(lf) if lf == name))
            .collect()
    }

    /// Statements appending field `f`, whose value is `e` (`&T`); `fields` are its siblings
    /// and `owner` the expression owning them (`self`).
    fn put_field(&self, f: &Field, e: &str, fields: &[Field], owner: &str) -> String {
        let c = self.c;
        let name = &f.name;
        match (&f.ty, &f.array) {
            (TypeRef::String, ArrayKind::Fixed(n)) => {
                format!("{c}::wire::put_fixed_string(out, {e}, {n}, {name:?})?;")
            }
            (TypeRef::String, _) => format!("{c}::wire::put_var_string(out, {e}, {name:?})?;"),
            (_, ArrayKind::None) => {
                let counted = Self::counted_by(fields, name);
                let t = self.ty(&f.ty, f.host_order);
                if counted.is_empty() {
                    return self.put(&t, e, 0);
                }
                let lens: Vec<String> = counted
                    .iter()
                    .map(|a| format!("{owner}.{}.len()", ident(&a.name)))
                    .collect();
                let len = if lens.len() == 1 {
                    lens[0].clone()
                } else {
                    format!("{c}::wire::same_len(&[{}], {name:?})?", lens.join(", "))
                };
                format!(
                    "{{ let n: {} = {c}::wire::count({len}, {name:?})?; {} }}",
                    self.rust_type(&f.ty),
                    self.put(&t, "&n", 0)
                )
            }
            (_, ArrayKind::Fixed(n)) => {
                let t = Ty::Array(Box::new(self.ty(&f.ty, f.host_order)), *n);
                self.put(&t, e, 0)
            }
            (_, ArrayKind::Counted(_) | ArrayKind::Unsized) => {
                let t = self.ty(&f.ty, f.host_order);
                match t {
                    Ty::Base(BaseType::U8, _) => format!("out.extend_from_slice(&({e})[..]);"),
                    _ => format!("for v in ({e}).iter() {{ {} }}", self.put(&t, "v", 1)),
                }
            }
        }
    }

    /// An expression reading field `f`; count fields were read into `f_<name>` locals.
    fn get_field(&self, f: &Field) -> String {
        let c = self.c;
        let name = &f.name;
        match (&f.ty, &f.array) {
            (TypeRef::String, ArrayKind::Fixed(n)) => format!("r.fixed_string({n}, {name:?})?"),
            (TypeRef::String, _) => format!("r.var_string({name:?})?"),
            (_, ArrayKind::None) => self.get(&self.ty(&f.ty, f.host_order), name),
            (_, ArrayKind::Fixed(n)) => {
                self.get(&Ty::Array(Box::new(self.ty(&f.ty, f.host_order)), *n), name)
            }
            (_, ArrayKind::Counted(lf)) => {
                let t = self.ty(&f.ty, f.host_order);
                let n = format!(
                    "usize::try_from(f_{lf}).unwrap_or(usize::MAX)",
                    lf = lf.trim_start_matches("r#")
                );
                match t {
                    Ty::Base(BaseType::U8, _) => format!("r.bytes({n}, {name:?})?.to_vec()"),
                    _ => format!(
                        "{{ let n = {n}; r.check_count(n, {min}, {name:?})?; \
                         let mut v = ::std::vec::Vec::with_capacity(n); \
                         for _ in 0..n {{ v.push({get}); }} v }}",
                        min = t.min(),
                        get = self.get(&t, name)
                    ),
                }
            }
            (_, ArrayKind::Unsized) => {
                let t = self.ty(&f.ty, f.host_order);
                match (&t, t.fixed()) {
                    (Ty::Base(BaseType::U8, _), _) => {
                        format!("r.bytes(r.remaining(), {name:?})?.to_vec()")
                    }
                    (_, Some(size)) => format!(
                        "{{ let n = {c}::wire::rest_count(r, {size}, {name:?})?; \
                         let mut v = ::std::vec::Vec::with_capacity(n); \
                         for _ in 0..n {{ v.push({get}); }} v }}",
                        get = self.get(&t, name)
                    ),
                    (_, None) => format!(
                        "{{ let mut v = ::std::vec::Vec::new(); \
                         while r.remaining() > 0 {{ let before = r.position(); \
                         v.push({get}); if r.position() == before {{ break; }} }} v }}",
                        get = self.get(&t, name)
                    ),
                }
            }
        }
    }

    /// An expression: the encoded length of field `f` with value `e` (`&T`).
    fn len_field(&self, f: &Field, e: &str) -> String {
        match (&f.ty, &f.array) {
            (TypeRef::String, ArrayKind::Fixed(n)) => n.to_string(),
            (TypeRef::String, _) => format!("(4 + {e}.len())"),
            (_, ArrayKind::None) => self.len(&self.ty(&f.ty, f.host_order), e, 0),
            (_, ArrayKind::Fixed(n)) => {
                let t = Ty::Array(Box::new(self.ty(&f.ty, f.host_order)), *n);
                self.len(&t, e, 0)
            }
            (_, _) => {
                let t = self.ty(&f.ty, f.host_order);
                match t.fixed() {
                    Some(s) => format!("({e}.len() * {s})"),
                    None => format!(
                        "{e}.iter().map(|v| {}).sum::<usize>()",
                        self.len(&t, "v", 1)
                    ),
                }
            }
        }
    }

    fn struct_decl(&self, out: &mut String, doc: &str, name: &str, fields: &[Field]) {
        let _ = writeln!(out, "/// {doc}");
        let _ = writeln!(out, "#[derive(Debug, Clone, PartialEq)]");
        let _ = writeln!(out, "pub struct {name} {{");
        for f in fields {
            let mut notes = Vec::new();
            if f.host_order {
                notes.push("host byte order");
            }
            let is_count = !Self::counted_by(fields, &f.name).is_empty();
            if is_count {
                notes.push("written from the array length on encode");
            }
            let note = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            let _ = writeln!(out, "    /// `{}`{note}.", f.name);
            let _ = writeln!(out, "    pub {}: {},", ident(&f.name), self.field_type(f));
        }
        let _ = writeln!(out, "}}\n");
        let _ = writeln!(out, "impl ::core::default::Default for {name} {{");
        let _ = writeln!(out, "    fn default() -> Self {{");
        let _ = writeln!(out, "        Self {{");
        for f in fields {
            let _ = writeln!(
                out,
                "            {}: {},",
                ident(&f.name),
                self.field_default(f)
            );
        }
        let _ = writeln!(out, "        }}\n    }}\n}}\n");
    }

    /// `impl Wire` for a struct or message body.
    /// The layout of a struct made only of scalars, enums and byte arrays, if it is one (and
    /// small): such types get straight-line code over one fixed-size array.
    fn flat_layout(&self, fields: &[Field]) -> Option<Vec<(usize, Flat)>> {
        let mut out = Vec::new();
        let mut off = 0usize;
        for f in fields {
            let flat = match (&f.ty, &f.array) {
                (TypeRef::String, _) => return None,
                (ty, ArrayKind::None) => match self.ty(ty, f.host_order) {
                    Ty::Base(b, host) => Flat::Base(b, host),
                    Ty::Wire(n, ..) => match ty {
                        TypeRef::Named(tn) => match self.enum_base(tn) {
                            Some(b) => Flat::Enum(n, b),
                            None => return None,
                        },
                        _ => return None,
                    },
                    Ty::Array(inner, n) => match *inner {
                        Ty::Base(BaseType::U8, _) => Flat::Bytes(n as usize),
                        _ => return None,
                    },
                },
                (ty, ArrayKind::Fixed(n)) => match self.ty(ty, f.host_order) {
                    Ty::Base(BaseType::U8, _) => Flat::Bytes(*n as usize),
                    _ => return None,
                },
                _ => return None,
            };
            let size = match &flat {
                Flat::Base(b, _) | Flat::Enum(_, b) => b.size(),
                Flat::Bytes(n) => *n,
            };
            out.push((off, flat));
            off += size;
        }
        (off <= 1024).then_some(out)
    }

    fn enum_base(&self, name: &str) -> Option<BaseType> {
        match self.m.named(name)? {
            NamedType::Enum(e) | NamedType::EnumFlags(e) => Some(e.underlying),
            NamedType::Alias(a) if a.length.is_none() => match &a.ty {
                TypeRef::Named(n) => self.enum_base(n),
                _ => None,
            },
            _ => None,
        }
    }

    /// `impl Wire` with straight-line code over a `[u8; SIZE]`.
    fn flat_wire_impl(
        &self,
        out: &mut String,
        name: &str,
        fields: &[Field],
        layout: &[(usize, Flat)],
    ) {
        let c = self.c;
        let size: usize = layout
            .last()
            .map(|(o, f)| {
                o + match f {
                    Flat::Base(b, _) | Flat::Enum(_, b) => b.size(),
                    Flat::Bytes(n) => *n,
                }
            })
            .unwrap_or(0);
        let _ = writeln!(out, "impl {c}::wire::Wire for {name} {{");
        let _ = writeln!(out, "    const MIN_SIZE: usize = {size};");
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn put(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), {c}::wire::EncodeError> {{"
        );
        let _ = writeln!(
            out,
            "        #[allow(unused_mut)]\n        let mut b = [0u8; {size}];"
        );
        for ((o, flat), f) in layout.iter().zip(fields) {
            let id = ident(&f.name);
            let stmt = match flat {
                Flat::Base(BaseType::U8, _) => format!("b[{o}] = self.{id};"),
                Flat::Base(BaseType::I8, _) => format!("b[{o}] = self.{id} as u8;"),
                Flat::Base(BaseType::Bool, _) => format!("b[{o}] = u8::from(self.{id});"),
                Flat::Base(bt, host) => format!(
                    "b[{o}..{}].copy_from_slice(&self.{id}.{}());",
                    o + bt.size(),
                    if *host { "to_ne_bytes" } else { "to_be_bytes" }
                ),
                Flat::Enum(_, BaseType::U8) => format!("b[{o}] = self.{id}.0;"),
                Flat::Enum(_, BaseType::I8) => format!("b[{o}] = self.{id}.0 as u8;"),
                Flat::Enum(_, bt) => format!(
                    "b[{o}..{}].copy_from_slice(&self.{id}.0.to_be_bytes());",
                    o + bt.size()
                ),
                Flat::Bytes(n) => format!("b[{o}..{}].copy_from_slice(&self.{id}[..]);", o + n),
            };
            let _ = writeln!(out, "        {stmt}");
        }
        let _ = writeln!(
            out,
            "        out.extend_from_slice(&b);\n        ::core::result::Result::Ok(())\n    }}"
        );
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn get(r: &mut {c}::wire::Reader<'_>) -> ::core::result::Result<Self, {c}::wire::DecodeError> {{"
        );
        let _ = writeln!(
            out,
            "        #[allow(unused_variables)]\n        let b: &[u8; {size}] = r.array::<{size}>({name:?})?;"
        );
        let _ = write!(out, "        ::core::result::Result::Ok(Self {{");
        for ((o, flat), f) in layout.iter().zip(fields) {
            let bytes = |n: usize| {
                (0..n)
                    .map(|i| format!("b[{}]", o + i))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let expr = match flat {
                Flat::Base(BaseType::U8, _) => format!("b[{o}]"),
                Flat::Base(BaseType::I8, _) => format!("b[{o}] as i8"),
                Flat::Base(BaseType::Bool, _) => format!("b[{o}] != 0"),
                Flat::Base(bt, host) => format!(
                    "{}::{}([{}])",
                    bt.name(),
                    if *host {
                        "from_ne_bytes"
                    } else {
                        "from_be_bytes"
                    },
                    bytes(bt.size())
                ),
                Flat::Enum(en, BaseType::U8) => format!("{en}(b[{o}])"),
                Flat::Enum(en, BaseType::I8) => format!("{en}(b[{o}] as i8)"),
                Flat::Enum(en, bt) => {
                    format!("{en}({}::from_be_bytes([{}]))", bt.name(), bytes(bt.size()))
                }
                Flat::Bytes(n) => format!(
                    "{{ let mut a = [0u8; {n}]; a.copy_from_slice(&b[{o}..{}]); a }}",
                    o + n
                ),
            };
            let _ = write!(out, " {}: {expr},", ident(&f.name));
        }
        let _ = writeln!(out, " }})\n    }}");
        let _ = writeln!(
            out,
            "    #[inline]\n    fn wire_len(&self) -> usize {{ {size} }}\n}}\n"
        );
    }

    fn wire_impl(&self, out: &mut String, name: &str, fields: &[Field]) {
        if let Some(layout) = self.flat_layout(fields) {
            return self.flat_wire_impl(out, name, fields, &layout);
        }
        let c = self.c;
        let min = fields.iter().fold(0usize, |a, f| {
            a.saturating_add(schema::field_min_size(self.m, f))
        });
        let _ = writeln!(out, "impl {c}::wire::Wire for {name} {{");
        let _ = writeln!(out, "    const MIN_SIZE: usize = {min};");
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn put(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), {c}::wire::EncodeError> {{"
        );
        if fields.is_empty() {
            let _ = writeln!(out, "        let _ = out;");
        }
        for f in fields {
            let e = format!("&self.{}", ident(&f.name));
            let _ = writeln!(out, "        {}", self.put_field(f, &e, fields, "self"));
        }
        let _ = writeln!(out, "        ::core::result::Result::Ok(())\n    }}");
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn get(r: &mut {c}::wire::Reader<'_>) -> ::core::result::Result<Self, {c}::wire::DecodeError> {{"
        );
        if fields.is_empty() {
            let _ = writeln!(out, "        let _ = r;");
        }
        for f in fields {
            let _ = writeln!(
                out,
                "        let f_{} = {};",
                f.name.trim_start_matches("r#"),
                self.get_field(f)
            );
        }
        let _ = write!(out, "        ::core::result::Result::Ok(Self {{");
        for f in fields {
            let _ = write!(out, " {}: f_{},", ident(&f.name), f.name);
        }
        let _ = writeln!(out, " }})\n    }}");
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(out, "    fn wire_len(&self) -> usize {{");
        let mut parts: Vec<String> = fields
            .iter()
            .map(|f| self.len_field(f, &format!("self.{}", ident(&f.name))))
            .collect();
        if parts.is_empty() {
            parts.push("0".to_owned());
        }
        let _ = writeln!(out, "        {}\n    }}\n}}\n", parts.join(" + "));
    }

    fn structure(&self, out: &mut String, t: &StructDef) {
        let name = camel(&t.name);
        self.struct_decl(out, &format!("The `{}` type.", t.name), &name, &t.fields);
        self.wire_impl(out, &name, &t.fields);
    }

    fn message(&self, out: &mut String, msg: &MessageDef) {
        let c = self.c;
        let name = camel(&msg.name);
        self.struct_decl(
            out,
            &format!("The `{}` message (CRC `0x{:08x}`).", msg.name, msg.crc),
            &name,
            &msg.fields,
        );
        self.wire_impl(out, &name, &msg.fields);
        let min = schema::message_min_size(self.m, msg);
        let ctx_off = match (
            self.scalar_field(msg, "context", BaseType::U32),
            schema::field_offset(self.m, msg, "context"),
        ) {
            (true, Some(o)) => format!("::core::option::Option::Some({o})"),
            _ => "::core::option::Option::None".to_owned(),
        };
        let _ = writeln!(out, "impl {c}::wire::Message for {name} {{");
        let _ = writeln!(out, "    const NAME: &'static str = {:?};", msg.name);
        let _ = writeln!(out, "    const CRC: u32 = 0x{:08x};", msg.crc);
        let _ = writeln!(
            out,
            "    const NAME_CRC: &'static str = {:?};",
            msg.name_crc()
        );
        let _ = writeln!(out, "    const MIN_SIZE: usize = {min};");
        let _ = writeln!(
            out,
            "    const CONTEXT_OFFSET: ::core::option::Option<usize> = {ctx_off};"
        );
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn encoded_len(&self) -> usize {{ 2 + {c}::wire::Wire::wire_len(self) }}"
        );
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn encode(&self, msg_id: u16, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), {c}::wire::EncodeError> {{\n\
             \x20       let start = out.len();\n\
             \x20       out.reserve({c}::wire::Message::encoded_len(self));\n\
             \x20       out.extend_from_slice(&msg_id.to_be_bytes());\n\
             \x20       let r = {c}::wire::Wire::put(self, out);\n\
             \x20       if r.is_err() {{ out.truncate(start); }}\n\
             \x20       r\n    }}"
        );
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn decode(bytes: &[u8]) -> ::core::result::Result<Self, {c}::wire::DecodeError> {{\n\
             \x20       if bytes.len() < {min} {{\n\
             \x20           return ::core::result::Result::Err({c}::wire::DecodeError::TooShort {{ need: {min}, have: bytes.len() }});\n\
             \x20       }}\n\
             \x20       let mut r = {c}::wire::Reader::new(&bytes[2..]);\n\
             \x20       <Self as {c}::wire::Wire>::get(&mut r)\n    }}"
        );
        for (field, ty, getter, setter) in [
            ("context", BaseType::U32, "context", "set_context"),
            (
                "client_index",
                BaseType::U32,
                "client_index",
                "set_client_index",
            ),
            ("retval", BaseType::I32, "retval", "set_retval"),
        ] {
            if self.scalar_field(msg, field, ty) {
                let t = ty.name();
                let _ = writeln!(
                    out,
                    "    #[inline]\n    fn {getter}(&self) -> ::core::option::Option<{t}> {{ ::core::option::Option::Some(self.{field}) }}\n\
                     \x20   #[inline]\n    fn {setter}(&mut self, v: {t}) {{ self.{field} = v; }}"
                );
            }
        }
        let _ = writeln!(out, "}}\n");
    }

    fn scalar_field(&self, msg: &MessageDef, name: &str, ty: BaseType) -> bool {
        msg.fields.iter().any(|f| {
            f.name == name
                && f.array == ArrayKind::None
                && f.ty == TypeRef::Base(ty)
                && !f.host_order
        })
    }

    fn alias(&self, out: &mut String, a: &AliasDef) {
        let inner = self.rust_type(&a.ty);
        let t = match a.length {
            Some(n) => format!("[{inner}; {n}]"),
            None => inner,
        };
        let _ = writeln!(out, "/// The `{}` alias.", a.name);
        let _ = writeln!(out, "pub type {} = {t};\n", camel(&a.name));
    }

    fn enumeration(&self, out: &mut String, e: &EnumDef, flags: bool) -> Result<(), CodegenError> {
        let c = self.c;
        let name = camel(&e.name);
        let ut = e.underlying.name();
        let (lo, hi): (i128, i128) = match e.underlying {
            BaseType::U8 => (0, u8::MAX.into()),
            BaseType::I8 => (i8::MIN.into(), i8::MAX.into()),
            BaseType::U16 => (0, u16::MAX.into()),
            BaseType::I16 => (i16::MIN.into(), i16::MAX.into()),
            BaseType::U32 => (0, u32::MAX.into()),
            BaseType::I32 => (i32::MIN.into(), i32::MAX.into()),
            BaseType::U64 => (0, u64::MAX.into()),
            _ => (i64::MIN.into(), i64::MAX.into()),
        };
        for (vn, v) in &e.values {
            if !(lo..=hi).contains(&i128::from(*v)) {
                return Err(CodegenError::EnumValueOutOfRange {
                    name: e.name.clone(),
                    value: vn.clone(),
                });
            }
        }
        let kind = if flags { "enumflag" } else { "enum" };
        let _ = writeln!(
            out,
            "/// The `{}` {kind} (`{ut}` on the wire). Values without a name survive decoding.",
            e.name
        );
        let _ = writeln!(
            out,
            "#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]"
        );
        let _ = writeln!(out, "pub struct {name}(pub {ut});\n");
        let _ = writeln!(out, "#[allow(non_upper_case_globals)]");
        let _ = writeln!(out, "impl {name} {{");
        for (vn, v) in &e.values {
            let _ = writeln!(out, "    /// `{vn}` = {v}.");
            let _ = writeln!(out, "    pub const {}: {name} = {name}({v});", ident(vn));
        }
        let _ = writeln!(out, "    /// The name of a listed value.");
        let _ = writeln!(
            out,
            "    pub fn name(self) -> ::core::option::Option<&'static str> {{"
        );
        let _ = writeln!(out, "        match self.0 {{");
        let mut seen = HashSet::new();
        for (vn, v) in &e.values {
            if seen.insert(*v) {
                let _ = writeln!(
                    out,
                    "            {v} => ::core::option::Option::Some({vn:?}),"
                );
            }
        }
        let _ = writeln!(
            out,
            "            _ => ::core::option::Option::None,\n        }}\n    }}"
        );
        if flags {
            let _ = writeln!(
                out,
                "    /// True if every bit of `other` is set.\n    pub fn contains(self, other: {name}) -> bool {{ self.0 & other.0 == other.0 }}\n\
                 \x20   /// True if no bit is set.\n    pub fn is_empty(self) -> bool {{ self.0 == 0 }}"
            );
        }
        let _ = writeln!(out, "}}\n");
        if flags {
            let _ = writeln!(
                out,
                "impl ::core::ops::BitOr for {name} {{ type Output = {name}; fn bitor(self, o: {name}) -> {name} {{ {name}(self.0 | o.0) }} }}\n\
                 impl ::core::ops::BitAnd for {name} {{ type Output = {name}; fn bitand(self, o: {name}) -> {name} {{ {name}(self.0 & o.0) }} }}\n\
                 impl ::core::ops::BitOrAssign for {name} {{ fn bitor_assign(&mut self, o: {name}) {{ self.0 |= o.0; }} }}\n"
            );
            let _ = writeln!(out, "impl ::core::fmt::Debug for {name} {{");
            let _ = writeln!(
                out,
                "    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{\n\
                 \x20       let mut rest = self.0;\n\
                 \x20       let mut first = true;\n\
                 \x20       f.write_str(\"{name}(\")?;"
            );
            for (vn, v) in &e.values {
                if *v != 0 {
                    let _ = writeln!(
                        out,
                        "        if self.0 & {v} == {v} && rest & {v} != 0 {{ if !first {{ f.write_str(\" | \")?; }} f.write_str({vn:?})?; rest &= !{v}; first = false; }}"
                    );
                }
            }
            let _ = writeln!(
                out,
                "        if rest != 0 || first {{ if !first {{ f.write_str(\" | \")?; }} write!(f, \"{{:#x}}\", rest)?; }}\n\
                 \x20       f.write_str(\")\")\n    }}\n}}\n"
            );
        } else {
            let _ = writeln!(
                out,
                "impl ::core::fmt::Debug for {name} {{\n\
                 \x20   fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{\n\
                 \x20       match self.name() {{\n\
                 \x20           ::core::option::Option::Some(n) => f.write_str(n),\n\
                 \x20           ::core::option::Option::None => write!(f, \"{name}({{}})\", self.0),\n\
                 \x20       }}\n    }}\n}}\n"
            );
        }
        let t = Ty::Base(e.underlying, false);
        let _ = writeln!(out, "impl {c}::wire::Wire for {name} {{");
        let _ = writeln!(out, "    const MIN_SIZE: usize = {};", e.underlying.size());
        let _ = writeln!(
            out,
            "    #[inline]\n    fn put(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), {c}::wire::EncodeError> {{ {} ::core::result::Result::Ok(()) }}",
            self.put(&t, "&self.0", 0)
        );
        let _ = writeln!(
            out,
            "    #[inline]\n    fn get(r: &mut {c}::wire::Reader<'_>) -> ::core::result::Result<Self, {c}::wire::DecodeError> {{ ::core::result::Result::Ok({name}({})) }}",
            self.get(&t, &e.name)
        );
        let _ = writeln!(
            out,
            "    #[inline]\n    fn wire_len(&self) -> usize {{ {} }}\n}}\n",
            e.underlying.size()
        );
        Ok(())
    }

    fn union(&self, out: &mut String, u: &UnionDef) {
        let c = self.c;
        let name = camel(&u.name);
        let size = schema::fixed_size(self.m, &TypeRef::Named(u.name.clone())).unwrap_or(0);
        let _ = writeln!(
            out,
            "/// The `{}` union: {size} bytes, read and written through its member accessors.",
            u.name
        );
        let _ = writeln!(out, "#[derive(Clone, Copy, PartialEq, Eq, Hash)]");
        let _ = writeln!(out, "pub struct {name}(pub [u8; {size}]);\n");
        let _ = writeln!(
            out,
            "impl ::core::default::Default for {name} {{ fn default() -> Self {{ {name}([0u8; {size}]) }} }}\n"
        );
        let _ = writeln!(
            out,
            "impl ::core::fmt::Debug for {name} {{\n\
             \x20   fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{\n\
             \x20       f.write_str(\"{name}(\")?;\n\
             \x20       for b in self.0.iter() {{ write!(f, \"{{:02x}}\", b)?; }}\n\
             \x20       f.write_str(\")\")\n    }}\n}}\n"
        );
        let _ = writeln!(out, "impl {name} {{");
        let _ = writeln!(
            out,
            "    /// Size on the wire.\n    pub const SIZE: usize = {size};"
        );
        for f in &u.fields {
            let ft = self.field_type(f);
            let id = ident(&f.name);
            let plain = f.name.clone();
            let _ = writeln!(
                out,
                "    /// Reads the bytes as member `{plain}`.\n\
                 \x20   pub fn {id}(&self) -> ::core::result::Result<{ft}, {c}::wire::DecodeError> {{\n\
                 \x20       let r = &mut {c}::wire::Reader::new(&self.0[..]);\n\
                 \x20       ::core::result::Result::Ok({})\n    }}",
                self.get_field(f)
            );
            let _ = writeln!(
                out,
                "    /// Stores `v` as member `{plain}` (the rest zeroed).\n\
                 \x20   pub fn set_{plain}(&mut self, v: &{ft}) -> ::core::result::Result<(), {c}::wire::EncodeError> {{\n\
                 \x20       let out = &mut ::std::vec::Vec::with_capacity({size});\n\
                 \x20       {}\n\
                 \x20       self.0 = [0u8; {size}];\n\
                 \x20       self.0[..out.len()].copy_from_slice(out);\n\
                 \x20       ::core::result::Result::Ok(())\n    }}",
                self.put_field(f, "v", &u.fields, "self")
            );
            let _ = writeln!(
                out,
                "    /// A union holding `v` as member `{plain}`.\n\
                 \x20   pub fn from_{plain}(v: &{ft}) -> ::core::result::Result<Self, {c}::wire::EncodeError> {{\n\
                 \x20       let mut u = Self::default();\n\
                 \x20       u.set_{plain}(v)?;\n\
                 \x20       ::core::result::Result::Ok(u)\n    }}"
            );
        }
        let _ = writeln!(out, "}}\n");
        let _ = writeln!(out, "impl {c}::wire::Wire for {name} {{");
        let _ = writeln!(out, "    const MIN_SIZE: usize = {size};");
        let _ = writeln!(
            out,
            "    #[inline]\n    fn put(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), {c}::wire::EncodeError> {{ out.extend_from_slice(&self.0[..]); ::core::result::Result::Ok(()) }}"
        );
        let _ = writeln!(
            out,
            "    #[inline]\n    fn get(r: &mut {c}::wire::Reader<'_>) -> ::core::result::Result<Self, {c}::wire::DecodeError> {{ ::core::result::Result::Ok({name}(r.take::<{size}>({:?})?)) }}",
            u.name
        );
        let _ = writeln!(
            out,
            "    #[inline]\n    fn wire_len(&self) -> usize {{ {size} }}\n}}\n"
        );
    }

    fn schema_fn(&self, out: &mut String) {
        let c = self.c;
        let m = self.m;
        let s = |x: &str| format!("::std::string::String::from({x:?})");
        let fields = |fs: &[Field]| {
            let items: Vec<String> = fs.iter().map(|f| self.field_expr(f)).collect();
            format!("::std::vec![{}]", items.join(", "))
        };
        let _ = writeln!(
            out,
            "/// The module's schema, for the message table, the dynamic codec and `get_api_json`."
        );
        let _ = writeln!(out, "pub fn schema() -> {c}::schema::Module {{");
        let _ = writeln!(out, "    {c}::schema::Module {{");
        let _ = writeln!(out, "        name: {},", s(&m.name));
        let _ = writeln!(
            out,
            "        version: {c}::schema::Version {{ major: {}, minor: {}, patch: {} }},",
            m.version.major, m.version.minor, m.version.patch
        );
        let _ = writeln!(out, "        options: {},", self.members_expr(&m.options));
        let types: Vec<String> = m
            .types
            .iter()
            .map(|t| {
                format!(
                    "{c}::schema::StructDef {{ name: {}, fields: {} }}",
                    s(&t.name),
                    fields(&t.fields)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "        types: ::std::vec![{}],",
            types.join(",\n            ")
        );
        let msgs: Vec<String> = m
            .messages
            .iter()
            .map(|msg| {
                format!(
                    "{c}::schema::MessageDef {{ name: {}, fields: {}, crc: 0x{:08x}, options: {} }}",
                    s(&msg.name),
                    fields(&msg.fields),
                    msg.crc,
                    self.members_expr(&msg.options)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "        messages: ::std::vec![{}],",
            msgs.join(",\n            ")
        );
        let unions: Vec<String> = m
            .unions
            .iter()
            .map(|u| {
                format!(
                    "{c}::schema::UnionDef {{ name: {}, fields: {} }}",
                    s(&u.name),
                    fields(&u.fields)
                )
            })
            .collect();
        let _ = writeln!(out, "        unions: ::std::vec![{}],", unions.join(", "));
        let enum_expr = |e: &EnumDef| {
            let vals: Vec<String> = e
                .values
                .iter()
                .map(|(n, v)| format!("({}, {v}i64)", s(n)))
                .collect();
            format!(
                "{c}::schema::EnumDef {{ name: {}, underlying: {c}::schema::BaseType::{:?}, values: ::std::vec![{}] }}",
                s(&e.name),
                e.underlying,
                vals.join(", ")
            )
        };
        let enums: Vec<String> = m.enums.iter().map(enum_expr).collect();
        let _ = writeln!(out, "        enums: ::std::vec![{}],", enums.join(", "));
        let flags: Vec<String> = m.enumflags.iter().map(enum_expr).collect();
        let _ = writeln!(out, "        enumflags: ::std::vec![{}],", flags.join(", "));
        let aliases: Vec<String> = m
            .aliases
            .iter()
            .map(|a| {
                let len = match a.length {
                    Some(l) => format!("::core::option::Option::Some({l})"),
                    None => "::core::option::Option::None".to_owned(),
                };
                format!(
                    "{c}::schema::AliasDef {{ name: {}, ty: {}, length: {len} }}",
                    s(&a.name),
                    self.type_ref_expr(&a.ty)
                )
            })
            .collect();
        let _ = writeln!(out, "        aliases: ::std::vec![{}],", aliases.join(", "));
        let services: Vec<String> = m
            .services
            .iter()
            .map(|sv| {
                let sm = match &sv.stream_msg {
                    Some(x) => format!("::core::option::Option::Some({})", s(x)),
                    None => "::core::option::Option::None".to_owned(),
                };
                let ev: Vec<String> = sv.events.iter().map(|e| s(e)).collect();
                format!(
                    "{c}::schema::Service {{ request: {}, reply: {}, stream: {}, stream_msg: {sm}, events: ::std::vec![{}] }}",
                    s(&sv.request),
                    s(&sv.reply),
                    sv.stream,
                    ev.join(", ")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "        services: ::std::vec![{}],",
            services.join(",\n            ")
        );
        let _ = writeln!(out, "        vl_api_version: 0x{:08x},", m.vl_api_version);
        let _ = writeln!(out, "    }}\n}}");
    }

    fn type_ref_expr(&self, t: &TypeRef) -> String {
        let c = self.c;
        match t {
            TypeRef::Base(b) => format!("{c}::schema::TypeRef::Base({c}::schema::BaseType::{b:?})"),
            TypeRef::String => format!("{c}::schema::TypeRef::String"),
            TypeRef::Named(n) => {
                format!("{c}::schema::TypeRef::Named(::std::string::String::from({n:?}))")
            }
        }
    }

    fn field_expr(&self, f: &Field) -> String {
        let c = self.c;
        let array = match &f.array {
            ArrayKind::None => format!("{c}::schema::ArrayKind::None"),
            ArrayKind::Fixed(n) => format!("{c}::schema::ArrayKind::Fixed({n})"),
            ArrayKind::Counted(lf) => {
                format!("{c}::schema::ArrayKind::Counted(::std::string::String::from({lf:?}))")
            }
            ArrayKind::Unsized => format!("{c}::schema::ArrayKind::Unsized"),
        };
        format!(
            "{c}::schema::Field {{ ty: {}, name: ::std::string::String::from({:?}), array: {array}, host_order: {}, options: {} }}",
            self.type_ref_expr(&f.ty),
            f.name,
            f.host_order,
            self.members_expr(&f.options)
        )
    }

    fn members_expr(&self, members: &[(String, Json)]) -> String {
        let items: Vec<String> = members
            .iter()
            .map(|(k, v)| {
                format!(
                    "(::std::string::String::from({k:?}), {})",
                    self.json_expr(v)
                )
            })
            .collect();
        format!("::std::vec![{}]", items.join(", "))
    }

    fn json_expr(&self, v: &Json) -> String {
        let c = self.c;
        match v {
            Json::Null => format!("{c}::json::Json::Null"),
            Json::Bool(b) => format!("{c}::json::Json::Bool({b})"),
            Json::Number(Number::UInt(n)) => {
                format!("{c}::json::Json::Number({c}::json::Number::UInt({n}))")
            }
            Json::Number(Number::Int(n)) => {
                format!("{c}::json::Json::Number({c}::json::Number::Int({n}))")
            }
            Json::Number(Number::Float(f)) => format!(
                "{c}::json::Json::Number({c}::json::Number::Float(f64::from_bits(0x{:016x})))",
                f.to_bits()
            ),
            Json::String(s) => {
                format!("{c}::json::Json::String(::std::string::String::from({s:?}))")
            }
            Json::Array(items) => {
                let items: Vec<String> = items.iter().map(|i| self.json_expr(i)).collect();
                format!("{c}::json::Json::Array(::std::vec![{}])", items.join(", "))
            }
            Json::Object(members) => {
                format!("{c}::json::Json::Object({})", self.members_expr(members))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel("control_ping_reply"), "ControlPingReply");
        assert_eq!(camel("ip4_address"), "Ip4Address");
        assert_eq!(camel("6rd"), "T6rd");
        assert_eq!(camel("self"), "Self_");
        assert_eq!(ident("type"), "r#type");
        assert_eq!(ident("self"), "self_");
        assert_eq!(ident("context"), "context");
    }

    #[test]
    fn rejects_clashes_and_bad_enums() {
        let clash = r#"{"types": [["a_b", ["u8", "x"]], ["a__b", ["u8", "y"]]]}"#;
        assert!(matches!(
            generate(clash, &CodegenOptions::new("t")),
            Err(CodegenError::NameClash { .. })
        ));
        let bad = r#"{"enums": [["e", ["BIG", 300], {"enumtype": "u8"}]]}"#;
        assert!(matches!(
            generate(bad, &CodegenOptions::new("t")),
            Err(CodegenError::EnumValueOutOfRange { .. })
        ));
        assert!(matches!(
            generate("{", &CodegenOptions::new("t")),
            Err(CodegenError::Schema(_))
        ));
    }

    #[test]
    fn output_is_deterministic() {
        let doc = r#"{"messages": [["m", ["u16", "_vl_msg_id"], ["u32", "context"]]]}"#;
        let a = generate(doc, &CodegenOptions::new("t")).unwrap();
        let b = generate(doc, &CodegenOptions::new("t")).unwrap();
        assert_eq!(a, b);
        assert!(a.contains("impl ::vlibapi::wire::Message for M"));
        assert!(a.contains(
            "const CONTEXT_OFFSET: ::core::option::Option<usize> = ::core::option::Option::Some(2);"
        ));
    }
}
