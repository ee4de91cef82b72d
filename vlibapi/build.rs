//! Generates the typed messages of `api/*.api.json` (and the test-only `api/test/*.api.json`)
//! into `OUT_DIR`, with the very generator the library exports: the JSON reader, the schema
//! model and the code generator are compiled in here from `src/` through `#[path]`.
#![allow(dead_code, unreachable_pub)]

#[path = "src/codegen.rs"]
mod codegen;
#[path = "src/json.rs"]
mod json;
#[path = "src/schema.rs"]
mod schema;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn api_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_str().is_some_and(|p| p.ends_with(".api.json")) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    println!("cargo::rerun-if-changed=api");
    println!("cargo::rerun-if-changed=api/test");
    let mut files = api_files(Path::new("api"))?;
    files.extend(api_files(Path::new("api/test"))?);
    for path in files {
        println!("cargo::rerun-if-changed={}", path.display());
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("bad file name")?;
        let module = file_name.trim_end_matches(".api.json");
        let text = fs::read_to_string(&path)?;
        let code = codegen::generate(&text, &codegen::CodegenOptions::new(module))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        fs::write(out_dir.join(format!("{module}.rs")), code)?;
    }
    Ok(())
}
