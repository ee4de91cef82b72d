//! Generates the plugin's typed messages from `api/example.api.json` with vlibapi's generator.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=api/example.api.json");
    let text = std::fs::read_to_string("api/example.api.json")?;
    let code =
        vlibapi::codegen::generate(&text, &vlibapi::codegen::CodegenOptions::new("example"))?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    std::fs::write(out.join("example.rs"), code)?;
    Ok(())
}
