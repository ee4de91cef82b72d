//! Golden byte vectors of the memclnt, memfd and vpe messages, built by hand from the layouts
//! in the reference (offsets, sizes, byte order, host-order exceptions) and compared with what
//! the generated codec produces and accepts.

use vlibapi::msgs::{memclnt, memfd, vpe};
use vlibapi::wire::{self, Message};

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn name64(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(64, 0);
    v
}

/// Encodes `msg` with `id`, checks it equals `want`, and that decoding gives `msg` back.
fn golden<M: Message>(msg: &M, id: u16, want: &[u8]) {
    let got = wire::to_vec(msg, id).unwrap();
    assert_eq!(got, want, "{}", M::NAME);
    assert_eq!(msg.encoded_len(), want.len(), "{}", M::NAME);
    assert_eq!(&M::decode(want).unwrap(), msg, "{}", M::NAME);
}

#[test]
fn sockclnt_create_is_70_bytes_context_then_name() {
    let msg = memclnt::SockclntCreate {
        context: 124,
        name: "papi".into(),
    };
    let mut want = be16(15).to_vec();
    want.extend(be32(124));
    want.extend(name64("papi"));
    assert_eq!(want.len(), 70);
    golden(&msg, 15, &want);
}

#[test]
fn sockclnt_create_reply_has_a_20_byte_header_and_66_byte_entries() {
    let entries = vec![
        memclnt::MessageTableEntry {
            index: 15,
            name: "sockclnt_create_455fb9c4".into(),
        },
        memclnt::MessageTableEntry {
            index: 16,
            name: "sockclnt_create_reply_35166268".into(),
        },
    ];
    let msg = memclnt::SockclntCreateReply {
        client_index: 0,
        context: 124,
        response: 0,
        index: 0x8000_0001,
        count: 2,
        message_table: entries,
    };
    let mut want = be16(16).to_vec();
    want.extend(be32(0));
    want.extend(be32(124));
    want.extend(be32(0));
    want.extend(be32(0x8000_0001));
    want.extend(be16(2));
    assert_eq!(want.len(), 20);
    want.extend(be16(15));
    want.extend(name64("sockclnt_create_455fb9c4"));
    want.extend(be16(16));
    want.extend(name64("sockclnt_create_reply_35166268"));
    assert_eq!(want.len(), 20 + 2 * 66);
    golden(&msg, 16, &want);

    // The count is written from the entries, whatever the struct says.
    let mut wrong = msg.clone();
    wrong.count = 9;
    assert_eq!(wire::to_vec(&wrong, 16).unwrap(), want);
    // A count running past the end is refused.
    let mut short = want.clone();
    short.truncate(20 + 66 + 10);
    assert_eq!(
        memclnt::SockclntCreateReply::decode(&short)
            .unwrap_err()
            .kind(),
        wire::DecodeErrorKind::BadLength
    );
}

#[test]
fn control_ping_and_reply() {
    let ping = memclnt::ControlPing {
        client_index: 0x8000_0001,
        context: 7,
    };
    let mut want = be16(23).to_vec();
    want.extend(be32(0x8000_0001));
    want.extend(be32(7));
    golden(&ping, 23, &want);
    assert_eq!(memclnt::ControlPing::CONTEXT_OFFSET, Some(6));

    let reply = memclnt::ControlPingReply {
        context: 7,
        retval: -1,
        client_index: 3,
        vpe_pid: 4242,
    };
    let mut want = be16(24).to_vec();
    want.extend(be32(7));
    want.extend((-1i32).to_be_bytes());
    want.extend(be32(3));
    want.extend(be32(4242));
    assert_eq!(want.len(), 18);
    golden(&reply, 24, &want);
    assert_eq!(memclnt::ControlPingReply::CONTEXT_OFFSET, Some(2));
}

#[test]
fn memclnt_create_keeps_pointers_in_host_order() {
    let mut api_versions = [0u32; 8];
    api_versions[0] = 0x0102_0304;
    let msg = memclnt::MemclntCreate {
        context: 0x0a0b_0c0d,
        ctx_quota: -2,
        input_queue: 0x7f00_1234_5678,
        name: "vat".into(),
        api_versions,
    };
    let mut want = be16(1).to_vec();
    want.extend(be32(0x0a0b_0c0d));
    want.extend((-2i32).to_ne_bytes());
    want.extend(0x7f00_1234_5678u64.to_ne_bytes());
    want.extend(name64("vat"));
    want.extend(be32(0x0102_0304));
    want.extend([0u8; 28]);
    assert_eq!(want.len(), 114);
    golden(&msg, 1, &want);

    let v2 = memclnt::MemclntCreateV2 {
        context: msg.context,
        ctx_quota: msg.ctx_quota,
        input_queue: msg.input_queue,
        name: msg.name.clone(),
        api_versions,
        keepalive: true,
    };
    let mut want2 = want.clone();
    want2[..2].copy_from_slice(&be16(25));
    want2.push(1);
    assert_eq!(want2.len(), 115);
    golden(&v2, 25, &want2);
}

#[test]
fn memclnt_create_reply_response_be_rest_host() {
    let msg = memclnt::MemclntCreateReply {
        context: 9,
        response: 1,
        handle: 0x7f00_0000_1000,
        index: (5 << 8) | 3,
        message_table: 0x7f00_0000_2000,
    };
    let mut want = be16(2).to_vec();
    want.extend(be32(9));
    want.extend(be32(1));
    want.extend(0x7f00_0000_1000u64.to_ne_bytes());
    want.extend(((5u32 << 8) | 3).to_ne_bytes());
    want.extend(0x7f00_0000_2000u64.to_ne_bytes());
    assert_eq!(want.len(), 30);
    golden(&msg, 2, &want);
}

#[test]
fn memclnt_delete_and_reply_are_host_order() {
    let msg = memclnt::MemclntDelete {
        index: 0x0000_0503,
        handle: 0x7f00_0000_1000,
        do_cleanup: true,
    };
    let mut want = be16(3).to_vec();
    want.extend(0x0503u32.to_ne_bytes());
    want.extend(0x7f00_0000_1000u64.to_ne_bytes());
    want.push(1);
    assert_eq!(want.len(), 15);
    golden(&msg, 3, &want);

    let reply = memclnt::MemclntDeleteReply {
        response: 1,
        handle: 0x7f00_0000_1000,
    };
    let mut want = be16(4).to_vec();
    want.extend(1i32.to_ne_bytes());
    want.extend(0x7f00_0000_1000u64.to_ne_bytes());
    assert_eq!(want.len(), 14);
    golden(&reply, 4, &want);
}

#[test]
fn sock_init_shm_size_and_configs_are_host_order() {
    // One vl_api_shm_elem_config_t {u8 type, u8 pad, u16 count, u32 size} as a host u64.
    let config = u64::from_ne_bytes({
        let mut c = [0u8; 8];
        c[0] = 1;
        c[2..4].copy_from_slice(&32u16.to_ne_bytes());
        c[4..8].copy_from_slice(&256u32.to_ne_bytes());
        c
    });
    let msg = memclnt::SockInitShm {
        client_index: 0x8000_0000,
        context: 5,
        requested_size: 64 << 20,
        nitems: 1,
        configs: vec![config],
    };
    let mut want = be16(19).to_vec();
    want.extend(be32(0x8000_0000));
    want.extend(be32(5));
    want.extend((64u32 << 20).to_ne_bytes());
    want.push(1);
    want.extend(config.to_ne_bytes());
    assert_eq!(want.len(), 15 + 8);
    golden(&msg, 19, &want);
}

#[test]
fn keepalive_delete_and_get_api_json() {
    let mut want = be16(21).to_vec();
    want.extend(be32(0x0500));
    want.extend(be32(0x0500));
    golden(
        &memclnt::MemclntKeepalive {
            client_index: 0x0500,
            context: 0x0500,
        },
        21,
        &want,
    );
    let mut want = be16(22).to_vec();
    want.extend(be32(0x0500));
    want.extend(be32(0));
    assert_eq!(want.len(), 10);
    golden(
        &memclnt::MemclntKeepaliveReply {
            context: 0x0500,
            retval: 0,
        },
        22,
        &want,
    );

    let mut want = be16(17).to_vec();
    want.extend(be32(0x8000_0002));
    want.extend(be32(3));
    want.extend(be32(0x8000_0002));
    assert_eq!(want.len(), 14);
    golden(
        &memclnt::SockclntDelete {
            client_index: 0x8000_0002,
            context: 3,
            index: 0x8000_0002,
        },
        17,
        &want,
    );
    let mut want = be16(18).to_vec();
    want.extend(be32(3));
    want.extend(be32(1));
    golden(
        &memclnt::SockclntDeleteReply {
            context: 3,
            response: 1,
        },
        18,
        &want,
    );

    // get_api_json_reply: the string's u32 length counts no NUL.
    let mut want = be16(28).to_vec();
    want.extend(be32(1));
    want.extend(be32(0));
    want.extend(be32(2));
    want.extend(b"[]");
    golden(
        &memclnt::GetApiJsonReply {
            context: 1,
            retval: 0,
            json: "[]".into(),
        },
        28,
        &want,
    );
}

#[test]
fn first_msg_id_versions_rpc_and_trace_ids() {
    let mut want = be16(10).to_vec();
    want.extend(be32(1));
    want.extend(be32(2));
    want.extend(name64("vpe"));
    assert_eq!(want.len(), 74);
    golden(
        &memclnt::GetFirstMsgId {
            client_index: 1,
            context: 2,
            name: "vpe".into(),
        },
        10,
        &want,
    );
    let mut want = be16(11).to_vec();
    want.extend(be32(2));
    want.extend(be32(0));
    want.extend(be16(31));
    assert_eq!(want.len(), 12);
    golden(
        &memclnt::GetFirstMsgIdReply {
            context: 2,
            retval: 0,
            first_msg_id: 31,
        },
        11,
        &want,
    );

    let mut want = be16(13).to_vec();
    want.extend(be32(4));
    want.extend(be32(0));
    want.extend(be32(1));
    for v in [2u32, 1, 0] {
        want.extend(be32(v));
    }
    want.extend(name64("memclnt"));
    assert_eq!(want.len(), 14 + 76);
    golden(
        &memclnt::ApiVersionsReply {
            context: 4,
            retval: 0,
            count: 1,
            api_versions: vec![memclnt::ModuleVersion {
                major: 2,
                minor: 1,
                patch: 0,
                name: "memclnt".into(),
            }],
        },
        13,
        &want,
    );

    let mut want = be16(8).to_vec();
    want.extend(be32(1));
    want.extend(be32(2));
    want.extend(0xdead_beefu64.to_be_bytes());
    want.extend([1, 0, 1]);
    want.extend(be32(3));
    want.extend([7, 8, 9]);
    assert_eq!(want.len(), 25 + 3);
    golden(
        &memclnt::RpcCall {
            client_index: 1,
            context: 2,
            function: 0xdead_beef,
            multicast: 1,
            need_barrier_sync: 0,
            send_reply: 1,
            data_len: 3,
            data: vec![7, 8, 9],
        },
        8,
        &want,
    );

    let mut want = be16(14).to_vec();
    want.extend(be32(1));
    want.extend(be32(2));
    let mut plugin = b"acl_plugin.so".to_vec();
    plugin.resize(128, 0);
    want.extend(plugin);
    want.extend(be16(500));
    want.extend(be16(540));
    assert_eq!(want.len(), 142);
    golden(
        &memclnt::TracePluginMsgIds {
            client_index: 1,
            context: 2,
            plugin_name: "acl_plugin.so".into(),
            first_msg_id: 500,
            last_msg_id: 540,
        },
        14,
        &want,
    );

    golden(&memclnt::RxThreadExit { dummy: 0 }, 5, &[0, 5, 0]);
}

#[test]
fn memfd_segment_create_size_is_host_order() {
    let msg = memfd::MemfdSegmentCreate {
        client_index: 0x8000_0000,
        context: 0xfeed_face,
        requested_size: 1 << 20,
    };
    let mut want = be16(29).to_vec();
    want.extend(be32(0x8000_0000));
    want.extend(be32(0xfeed_face));
    want.extend((1u64 << 20).to_ne_bytes());
    assert_eq!(want.len(), 18);
    golden(&msg, 29, &want);

    let reply = memfd::MemfdSegmentCreateReply {
        context: 0xfeed_face,
        retval: -31,
        master_fd: 0,
    };
    let mut want = be16(30).to_vec();
    want.extend(be32(0xfeed_face));
    want.extend((-31i32).to_be_bytes());
    want.extend(be32(0));
    assert_eq!(want.len(), 14);
    golden(&reply, 30, &want);
}

#[test]
fn vpe_show_version_and_cli_inband() {
    let reply = vpe::ShowVersionReply {
        context: 1,
        retval: 0,
        program: "vpp-rs".into(),
        version: "0.1.0".into(),
        build_date: "today".into(),
        build_directory: "/work".into(),
    };
    let want = wire::to_vec(&reply, 32).unwrap();
    assert_eq!(want.len(), 2 + 4 + 4 + 32 * 3 + 256);
    assert_eq!(&want[10..16], b"vpp-rs");
    assert_eq!(&want[42..47], b"0.1.0");
    assert_eq!(&want[106..111], b"/work");
    golden(&reply, 32, &want);

    let mut want = be16(33).to_vec();
    want.extend(be32(1));
    want.extend(be32(2));
    want.extend(be32(12));
    want.extend(b"show version");
    golden(
        &vpe::CliInband {
            client_index: 1,
            context: 2,
            cmd: "show version".into(),
        },
        33,
        &want,
    );
    // A fixed string needs room for its NUL; a variable one does not.
    let long = vpe::ShowVersionReply {
        program: "x".repeat(32),
        ..Default::default()
    };
    assert!(matches!(
        wire::to_vec(&long, 32),
        Err(wire::EncodeError::StringTooLong {
            len: 32,
            max: 31,
            ..
        })
    ));
    let mut out = vec![0xEE];
    assert!(long.encode(32, &mut out).is_err());
    assert_eq!(out, [0xEE], "a failed encode leaves the buffer as it was");
}

#[test]
fn crcs_and_keys() {
    assert_eq!(memclnt::ControlPing::NAME_CRC, "control_ping_51077d14");
    assert_eq!(memclnt::ControlPing::name_crc(), "control_ping_51077d14");
    assert_eq!(vpe::ShowVersion::CRC, 0x51077d14);
    assert_eq!(vpe::ShowVersionReply::CRC, 0xc919bde1);
    assert_eq!(vpe::CliInband::CRC, 0xf8377302);
    assert_eq!(vpe::CliInbandReply::CRC, 0x05879051);
    assert_eq!(memclnt::MESSAGES.len(), 28);
    assert_eq!(memclnt::MESSAGES[14], "sockclnt_create_455fb9c4");
    assert_eq!(memclnt::VERSION, (2, 1, 0));
}
