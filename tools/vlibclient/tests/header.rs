//! `include/vlibclient.h` and `src/ffi.rs` agree: every exported function is declared, and
//! every return code, flag and transport constant has the same value on both sides.

use std::collections::BTreeSet;

const HEADER: &str = include_str!("../include/vlibclient.h");
const FFI: &str = include_str!("../src/ffi.rs");

#[test]
fn every_exported_function_is_declared() {
    let exported: BTreeSet<&str> = FFI
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix("pub unsafe extern \"C\" fn ")
                .or_else(|| l.strip_prefix("pub extern \"C\" fn "))?;
            rest.split('(').next()
        })
        .collect();
    assert!(exported.len() >= 19, "{exported:?}");
    for name in &exported {
        let declared = HEADER.lines().any(|l| {
            !l.trim_start().starts_with('*')
                && (l.contains(&format!(" {name}(")) || l.contains(&format!("*{name}(")))
        });
        assert!(
            declared,
            "{name} is exported but not declared in vlibclient.h"
        );
    }
    // And nothing is declared that is not exported.
    for l in HEADER
        .lines()
        .filter(|l| l.contains("vlc_") && l.contains('('))
    {
        if l.trim_start().starts_with("/*")
            || l.trim_start().starts_with('*')
            || l.contains("typedef")
        {
            continue;
        }
        let name = l
            .split('(')
            .next()
            .unwrap()
            .rsplit([' ', '*'])
            .next()
            .unwrap();
        if name.starts_with("vlc_") {
            assert!(
                exported.contains(name),
                "{name} is declared but not exported"
            );
        }
    }
}

#[test]
fn constants_match() {
    use vlibclient::ffi::*;
    let consts = [
        ("VLC_OK", VLC_OK),
        ("VLC_E_INVAL", VLC_E_INVAL),
        ("VLC_E_CONNECT", VLC_E_CONNECT),
        ("VLC_E_TIMEOUT", VLC_E_TIMEOUT),
        ("VLC_E_DISCONNECTED", VLC_E_DISCONNECTED),
        ("VLC_E_UNKNOWN_MSG", VLC_E_UNKNOWN_MSG),
        ("VLC_E_PROTOCOL", VLC_E_PROTOCOL),
        ("VLC_E_OS", VLC_E_OS),
        ("VLC_E_NOT_AVAILABLE", VLC_E_NOT_AVAILABLE),
        ("VLC_E_CALLBACK_MODE", VLC_E_CALLBACK_MODE),
        ("VLC_E_PANIC", VLC_E_PANIC),
        ("VLC_SEND_MORE", VLC_SEND_MORE),
        ("VLC_TRANSPORT_SOCKET", VLC_TRANSPORT_SOCKET),
        ("VLC_TRANSPORT_SHM", VLC_TRANSPORT_SHM),
    ];
    for (name, value) in consts {
        let line = HEADER
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} is not defined in vlibclient.h"));
        let text = line[format!("#define {name} ").len()..]
            .split("/*")
            .next()
            .unwrap()
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')');
        assert_eq!(text.parse::<i32>().ok(), Some(value), "{line}");
    }
    assert_eq!(
        std::mem::size_of::<VlcOptions>(),
        24,
        "vlc_options_t is four u32 and one u64"
    );
}
