//! The fuzz targets on stable, in every `cargo test`: each target's body (the same source the
//! libFuzzer entry points in `fuzz/` call) runs on every committed seed (`fuzz/seeds/<target>/`),
//! every kept crash reproducer (`fuzz/regressions/<target>/`), and a few thousand deterministic
//! pseudo-random inputs: half pure noise, half seeds with bytes flipped, cut or spliced.
//!
//! Seeds are generated (`fuzz/src/bodies/seeds.rs`); `VLIB_FUZZ_BLESS=1` rewrites them.

#[allow(unreachable_pub, missing_debug_implementations)]
#[path = "../../../fuzz/src/bodies/mod.rs"]
mod bodies;

use std::path::{Path, PathBuf};

use bodies::Rng;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted by name.
fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `body` on `input`; on a panic, keeps the input where `cargo xtask fuzz` can replay it
/// and fails naming it.
fn run_one(target: &str, body: fn(&[u8]), what: &str, input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| body(input));
    if outcome.is_err() {
        let dir = std::env::temp_dir().join(format!("vlib-fuzz-failures-{target}"));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("crash-{}", std::process::id()));
        let _ = std::fs::write(&path, input);
        panic!(
            "{target}: {what} failed; input kept at {} (copy it to fuzz/regressions/{target}/ \
             once fixed): {}",
            path.display(),
            hex(input)
        );
    }
}

/// A seed with a few random changes: bytes overwritten, a cut, or a piece of another seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len() as u64) as usize].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = rng.next_u64() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v.truncate(i);
            }
            2 => {
                let other = &seeds[rng.below(seeds.len() as u64) as usize];
                let from = rng.below(other.len() as u64 + 1) as usize;
                let at = rng.below(v.len() as u64 + 1) as usize;
                v.splice(at..at, other[from..].iter().copied());
            }
            _ => {
                let at = rng.below(v.len() as u64 + 1) as usize;
                let n = rng.below(16) as usize;
                v.splice(at..at, rng.bytes(n));
            }
        }
    }
    v
}

/// Every seed and reproducer of `target`, then `n_random` generated inputs.
fn run_target(target: &str, n_random: usize) {
    let body = bodies::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|&(_, body)| body)
        .unwrap_or_else(|| panic!("no target {target}"));
    let seeds = files("seeds", target);
    assert!(!seeds.is_empty(), "{target}: no committed seeds");
    for (path, bytes) in seeds.iter().chain(&files("regressions", target)) {
        run_one(target, body, &path.display().to_string(), bytes);
    }
    let seed_bytes: Vec<Vec<u8>> = seeds.into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng::new(0x5eed_0000 ^ target.len() as u64);
    for i in 0..n_random {
        let input = if i % 2 == 0 {
            let n = rng.below(512) as usize;
            rng.bytes(n)
        } else {
            mutate(&mut rng, &seed_bytes)
        };
        run_one(target, body, &format!("generated input {i}"), &input);
    }
}

#[test]
fn fuzz_frame_reader_seeds_reproducers_and_generated_inputs() {
    run_target("frame_reader", 4000);
}

#[test]
fn fuzz_decode_all_seeds_reproducers_and_generated_inputs() {
    run_target("decode_all", 3000);
}

#[test]
fn fuzz_server_socket_seeds_reproducers_and_generated_inputs() {
    run_target("server_socket", 2000);
}

#[test]
fn fuzz_shm_reader_seeds_reproducers_and_generated_inputs() {
    run_target("shm_reader", 3000);
}

/// The committed seeds are the generated ones (or, with `VLIB_FUZZ_BLESS=1`, become them).
#[test]
fn fuzz_committed_seeds_are_current() {
    let bless = std::env::var_os("VLIB_FUZZ_BLESS").is_some();
    let mut stale = Vec::new();
    for (target, name, bytes) in bodies::seeds::all() {
        let path = fuzz_dir().join("seeds").join(target).join(&name);
        if std::fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else {
            stale.push(format!("{target}/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or stale (run with VLIB_FUZZ_BLESS=1 and commit fuzz/seeds): {stale:?}"
    );
}

/// Every message with a variable part, in every generated module, has a seed that decodes
/// as it with its variable part non-empty, so the fuzzer starts inside each such decoder.
#[test]
fn fuzz_decode_seeds_cover_every_message_with_a_variable_part() {
    use vlibapi::wire::{Message, MessageVisitor};
    struct Cover {
        table: vlibapi::MessageTable,
        seeds: Vec<(String, Vec<u8>)>,
        covered: usize,
    }
    impl MessageVisitor for Cover {
        fn visit<M: Message>(&mut self) {
            let def = self
                .table
                .schema()
                .message_by_name_crc(M::NAME_CRC)
                .expect("in the table");
            if !bodies::decode_all::has_variable_part(self.table.schema(), def) {
                return;
            }
            let (_, bytes) = self
                .seeds
                .iter()
                .find(|(n, _)| n == M::NAME_CRC)
                .unwrap_or_else(|| panic!("{}: no seed", M::NAME_CRC));
            let m = M::decode(bytes).unwrap_or_else(|e| panic!("{}: seed refused: {e}", M::NAME));
            assert!(
                m.encoded_len() > M::MIN_SIZE,
                "{}: the seed's variable part is empty",
                M::NAME
            );
            self.covered += 1;
        }
    }
    let mut cover = Cover {
        table: bodies::decode_all::table(),
        seeds: bodies::decode_all::structured_inputs(),
        covered: 0,
    };
    bodies::decode_all::visit_every_module(&mut cover);
    assert!(
        cover.covered >= 10,
        "only {} messages covered",
        cover.covered
    );
    // The fuzzed modules are all there are: every `.api.json` in the tree is one of them.
    let root = fuzz_dir().join("..");
    let mut api_files = Vec::new();
    for dir in ["vlibapi/api", "vlibapi/api/test"] {
        api_files.push(root.join(dir));
    }
    for tool in std::fs::read_dir(root.join("tools")).expect("tools/") {
        api_files.push(tool.expect("entry").path().join("api"));
    }
    let fuzzed: Vec<String> = bodies::decode_all::every_module()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for dir in api_files {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(module) = name.strip_suffix(".api.json") {
                assert!(
                    fuzzed.iter().any(|m| m == module),
                    "{}: module {module} is not fuzzed (add it to decode_all::visit_every_module)",
                    dir.display()
                );
            }
        }
    }
}
