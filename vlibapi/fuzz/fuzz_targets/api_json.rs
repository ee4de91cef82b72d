//! Feeds arbitrary text to the JSON parser and the `.api.json` reader, and whatever loads to the
//! code generator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = vlibapi::json::parse(text);
    let _ = vlibapi::schema::Schema::from_api_json_array(text);
    if let Ok(m) = vlibapi::schema::Module::from_json_text("fuzz", text) {
        let _ =
            vlibapi::codegen::generate_module(&m, &vlibapi::codegen::CodegenOptions::new("fuzz"));
        let _ = m.to_json(Default::default()).to_compact();
    }
});
