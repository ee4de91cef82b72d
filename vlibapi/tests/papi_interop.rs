//! Checks against the real vpp_papi 2.4.2 (from PyPI, in a venv at `target/py-venv`):
//! every memclnt name, field layout and CRC equals the wheel's `memclnt.api.json`, and the
//! papi serializer, loading our `get_api_json` output, packs and unpacks messages exactly as
//! our codec does.

use std::path::{Path, PathBuf};
use std::process::Command;

use vlibapi::MessageTable;
use vlibapi::json::{self, Json, Number};
use vlibapi::msgs::{memclnt, vlib_api, vpe};
use vlibapi::schema::Module;
use vlibapi::wire::{self, Message};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The venv's python3, created on first use (serialised by a lock in the script).
fn papi_python() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ensure_venv.sh");
    let venv = workspace().join("target/py-venv");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&venv)
        .output()
        .expect("run ensure_venv.sh");
    assert!(
        out.status.success(),
        "ensure_venv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn wheel_memclnt_json() -> String {
    let path = match std::env::var_os("VPP_PAPI_MEMCLNT_JSON") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = Command::new(papi_python())
                .args([
                    "-c",
                    "import vpp_papi, os; print(os.path.dirname(vpp_papi.__file__))",
                ])
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dir = String::from_utf8(out.stdout).unwrap();
            Path::new(dir.trim()).join("data/memclnt.api.json")
        }
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn memclnt_matches_the_vpp_papi_wheel() {
    let wheel = Module::from_json_text("memclnt", &wheel_memclnt_json()).unwrap();
    let ours = memclnt::schema();
    let names = |m: &Module| {
        m.messages
            .iter()
            .map(|x| x.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&wheel), "names and order (IDs 1-28)");
    assert_eq!(ours.messages.len(), 28);
    for (o, w) in ours.messages.iter().zip(&wheel.messages) {
        assert_eq!(o.crc, w.crc, "crc of {}", o.name);
        assert_eq!(o.fields.len(), w.fields.len(), "fields of {}", o.name);
        for (of, wf) in o.fields.iter().zip(&w.fields) {
            assert_eq!(
                (&of.ty, &of.name, &of.array, &of.options),
                (&wf.ty, &wf.name, &wf.array, &wf.options),
                "field of {}",
                o.name
            );
        }
        assert_eq!(o.options, w.options, "options of {}", o.name);
    }
    assert_eq!(ours.types, wheel.types);
    assert_eq!(ours.services, wheel.services);
    assert_eq!(ours.version, wheel.version);
    assert_eq!(ours.vl_api_version, wheel.vl_api_version);
    // The generated constants agree with the schema.
    for (key, m) in memclnt::MESSAGES.iter().zip(&wheel.messages) {
        assert_eq!(*key, m.name_crc());
    }
}

fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}
fn num(v: i64) -> Json {
    if v < 0 {
        Json::Number(Number::Int(v))
    } else {
        Json::Number(Number::UInt(v as u64))
    }
}
fn s(v: &str) -> Json {
    Json::String(v.to_owned())
}

struct Case {
    name: &'static str,
    id: u16,
    args: Json,
    ours: Vec<u8>,
}

fn case<M: Message>(table: &MessageTable, msg: &M, args: Json) -> Case {
    let id = table.id_of::<M>().unwrap();
    Case {
        name: M::NAME,
        id,
        args,
        ours: wire::to_vec(msg, id).unwrap(),
    }
}

#[test]
fn papi_serializer_packs_and_unpacks_like_our_codec() {
    let table = MessageTable::with_core();
    let dir = std::env::temp_dir().join(format!("vlibapi-papi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let api_json = dir.join("api.json");
    std::fs::write(&api_json, table.api_json()).unwrap();

    let entries = table.sockclnt_entries();
    let entry_args: Vec<Json> = entries
        .iter()
        .take(3)
        .map(|e| obj(vec![("index", num(e.index.into())), ("name", s(&e.name))]))
        .collect();
    let cases = [
        case(
            &table,
            &memclnt::ControlPingReply {
                context: 5,
                retval: -3,
                client_index: 7,
                vpe_pid: 1234,
            },
            obj(vec![
                ("context", num(5)),
                ("retval", num(-3)),
                ("client_index", num(7)),
                ("vpe_pid", num(1234)),
            ]),
        ),
        case(
            &table,
            &memclnt::SockclntCreateReply {
                client_index: 0,
                context: 124,
                response: 0,
                index: 0x8000_0001,
                count: 3,
                message_table: entries[..3].to_vec(),
            },
            obj(vec![
                ("context", num(124)),
                ("index", num(0x8000_0001)),
                ("count", num(3)),
                ("message_table", Json::Array(entry_args)),
            ]),
        ),
        case(
            &table,
            &memclnt::SockclntCreate {
                context: 124,
                name: "papi-test".into(),
            },
            obj(vec![("context", num(124)), ("name", s("papi-test"))]),
        ),
        case(
            &table,
            &vpe::CliInbandReply {
                context: 9,
                retval: 0,
                reply: "hello\nworld".into(),
            },
            obj(vec![("context", num(9)), ("reply", s("hello\nworld"))]),
        ),
        case(
            &table,
            &vpe::CliInband {
                client_index: 1,
                context: 2,
                cmd: "show version".into(),
            },
            obj(vec![
                ("client_index", num(1)),
                ("context", num(2)),
                ("cmd", s("show version")),
            ]),
        ),
        case(
            &table,
            &vpe::ShowVersionReply {
                context: 1,
                retval: 0,
                program: "vpp-rs".into(),
                version: "0.1.0".into(),
                build_date: "2026-11-28".into(),
                build_directory: "/work/main".into(),
            },
            obj(vec![
                ("context", num(1)),
                ("program", s("vpp-rs")),
                ("version", s("0.1.0")),
                ("build_date", s("2026-11-28")),
                ("build_directory", s("/work/main")),
            ]),
        ),
        case(
            &table,
            &vlib_api::ApiClientDetails {
                context: 3,
                index: 0x8000_0002,
                name: "papi".into(),
                transport: vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET,
                pid: 99,
                uid: 1000,
            },
            obj(vec![
                ("context", num(3)),
                ("index", num(0x8000_0002)),
                ("name", s("papi")),
                ("transport", num(1)),
                ("pid", num(99)),
                ("uid", num(1000)),
            ]),
        ),
        case(
            &table,
            &memclnt::GetApiJsonReply {
                context: 2,
                retval: 0,
                json: "[{}]".into(),
            },
            obj(vec![("context", num(2)), ("json", s("[{}]"))]),
        ),
    ];
    let table_json = Json::Object(
        table
            .iter()
            .map(|i| (i.name_crc.to_owned(), num(i.id.into())))
            .collect(),
    );
    let spec = obj(vec![
        ("api_json", s(api_json.to_str().unwrap())),
        ("table", table_json),
        (
            "cases",
            Json::Array(
                cases
                    .iter()
                    .map(|c| {
                        let hex: String = c.ours.iter().map(|b| format!("{b:02x}")).collect();
                        obj(vec![
                            ("msg", s(c.name)),
                            ("id", num(c.id.into())),
                            ("args", c.args.clone()),
                            ("ours", s(&hex)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_compact()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/papi_check.py");
    let out = Command::new(papi_python())
        .arg(&script)
        .arg(&spec_path)
        .output()
        .expect("run papi_check.py");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "papi_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = json::parse(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let packed = result.get("packed").unwrap().as_array().unwrap();
    let unpacked = result.get("unpacked").unwrap().as_array().unwrap();
    for (i, c) in cases.iter().enumerate() {
        let hex: String = c.ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            packed[i].as_str().unwrap(),
            hex,
            "papi packs {} like us",
            c.name
        );
        let u = &unpacked[i];
        assert_eq!(
            u.get("__size").and_then(Json::as_u64),
            Some(c.ours.len() as u64),
            "{}",
            c.name
        );
        for (k, v) in c.args.as_object().unwrap() {
            assert_eq!(
                u.get(k),
                Some(v),
                "papi unpacks {}.{k} from our bytes",
                c.name
            );
        }
    }
    let functions: Vec<&str> = result
        .get("functions")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Json::as_str)
        .collect();
    for f in [
        "control_ping",
        "show_version",
        "cli_inband",
        "api_client_dump",
        "get_api_json",
    ] {
        assert!(
            functions.contains(&f),
            "api.{f}() built from our JSON: {functions:?}"
        );
    }
    // Our JSON round-trips through our own reader too.
    let reread = vlibapi::schema::Schema::from_api_json_array(&table.api_json()).unwrap();
    assert_eq!(reread.modules().len(), table.schema().modules().len());
}
