//! The JSON reader and the `.api.json` loader never panic on damaged input, and what they
//! accept survives a write/read round trip.

mod support;

use support::Rng;
use vlibapi::json;
use vlibapi::schema::{Module, Schema, WriteOptions};

const SOURCES: [&str; 5] = [
    include_str!("../api/memclnt.api.json"),
    include_str!("../api/memfd.api.json"),
    include_str!("../api/vpe.api.json"),
    include_str!("../api/vlib_api.api.json"),
    include_str!("../api/test/testapi.api.json"),
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len() as u64) as usize;
        match rng.below(5) {
            0 => b[i] = b"[]{}\",:0123456789-.eE \\u"[rng.below(24) as usize],
            1 => {
                b.remove(i);
            }
            2 => b.insert(i, b"[{\"0"[rng.below(4) as usize]),
            3 => b.truncate(i),
            _ => {
                // Duplicate a slice, which tends to keep the JSON valid but odd.
                let j = (i + rng.below(40) as usize).min(b.len());
                let piece = b[i..j].to_vec();
                b.splice(i..i, piece);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn damaged_documents_are_errors_or_round_trip() {
    let mut rng = Rng::new(42);
    let mut accepted = 0;
    for round in 0..4000 {
        let src = SOURCES[round % SOURCES.len()];
        let text = mutate(&mut rng, src);
        let _ = json::parse(&text);
        let _ = Schema::from_api_json_array(&format!("[{text}]"));
        if let Ok(m) = Module::from_json_text("m", &text) {
            accepted += 1;
            let out = m
                .to_json(WriteOptions {
                    host_order_overlay: true,
                })
                .to_pretty(4);
            let back = Module::from_json_text("m", &out).unwrap();
            assert_eq!(back, m, "round {round}");
            let _ =
                vlibapi::codegen::generate_module(&m, &vlibapi::codegen::CodegenOptions::new("m"));
        }
    }
    assert!(accepted > 0, "some mutations stay valid");
}

#[test]
fn our_files_round_trip_exactly() {
    for src in SOURCES {
        let m = Module::from_json_text("m", src).unwrap();
        let out = m.to_json(WriteOptions {
            host_order_overlay: true,
        });
        assert_eq!(Module::from_json(&m.name, &out).unwrap(), m);
    }
}
