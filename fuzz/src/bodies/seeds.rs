//! The committed seed corpus, generated: a few well-formed inputs per target that lead the
//! fuzzer (and the regression tests) into the interesting paths at once. The regression tests
//! check that `fuzz/seeds/<target>/<name>` holds exactly these bytes, and rewrite them when run
//! with `VLIB_FUZZ_BLESS=1`.

use example_plugin::msgs as ex;
use vlibapi::MessageTable;
use vlibapi::msgs::{memclnt, memfd, vpe};
use vlibapi::wire::{self, Message};
use vlibsocket::frame::header;

use super::decode_all;

/// Every generated seed: (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in frame_reader() {
        out.push(("frame_reader", name.to_owned(), bytes));
    }
    for (name, bytes) in decode_all::structured_inputs() {
        out.push(("decode_all", format!("msg-{name}"), bytes));
    }
    for (name, bytes) in server_socket() {
        out.push(("server_socket", name.to_owned(), bytes));
    }
    for (name, bytes) in shm_reader() {
        out.push(("shm_reader", name, bytes));
    }
    out
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = header(msg.len() as u32).to_vec();
    f.extend_from_slice(msg);
    f
}

/// Pieces for the frame reader: `(through_socket, bytes)`, each at most 127 bytes.
fn pieces(config: u8, parts: &[(bool, &[u8])]) -> Vec<u8> {
    let mut out = vec![config];
    for &(socket, bytes) in parts {
        for chunk in bytes.chunks(127) {
            out.push(chunk.len() as u8 | if socket { 0x80 } else { 0 });
            out.extend_from_slice(chunk);
        }
    }
    out
}

fn frame_reader() -> Vec<(&'static str, Vec<u8>)> {
    let a = frame(&[0, 23, 0, 0, 0, 0, 0, 0, 0, 1]);
    let b = frame(&(0..200u8).collect::<Vec<_>>());
    let mut ab = a.clone();
    ab.extend_from_slice(&b);
    vec![
        ("two-frames-whole", pieces(7, &[(false, &ab)])),
        (
            "two-frames-cut-mid-header",
            pieces(
                7,
                &[(false, &ab[..9]), (true, &ab[9..30]), (false, &ab[30..])],
            ),
        ),
        (
            "cut-at-every-boundary",
            pieces(
                5,
                &ab.chunks(1)
                    .enumerate()
                    .map(|(i, c)| (i % 2 == 0, c))
                    .collect::<Vec<_>>(),
            ),
        ),
        ("too-large", pieces(4, &[(true, &header(65))])),
        ("too-short", pieces(7, &[(false, &header(1))])),
        ("exactly-max", pieces(2, &[(false, &frame(&[0, 1, 2]))])),
        (
            "huge-announced",
            pieces(7, &[(true, &header(256 << 10)), (true, &[0; 100])]),
        ),
    ]
}

/// The server's message table: the core modules, then the example plugin's.
fn server_table() -> MessageTable {
    let mut t = MessageTable::with_core();
    t.add_module(ex::schema()).expect("example registers");
    t
}

/// Operation 0 of the server target: a frame of message `M` (the ID selector and the body).
fn typed<M: Message>(table: &MessageTable, msg: &M) -> Vec<u8> {
    let id = table.id_of::<M>().expect("message in the table");
    let bytes = wire::to_vec(msg, id).expect("encodes");
    let body = &bytes[2..];
    assert!(body.len() <= 255, "{}: seed body too long", M::NAME);
    let mut out = vec![0, (id - 1) as u8, body.len() as u8];
    out.extend_from_slice(body);
    out
}

/// Operation 1 of the server target: raw bytes.
fn raw(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(255) {
        out.extend_from_slice(&[1, chunk.len() as u8]);
        out.extend_from_slice(chunk);
    }
    out
}

fn server_socket() -> Vec<(&'static str, Vec<u8>)> {
    let t = server_table();
    let create = typed(
        &t,
        &memclnt::SockclntCreate {
            context: 7,
            name: "attacker".into(),
        },
    );
    let seq = |parts: &[Vec<u8>]| parts.concat();
    let turn = vec![2u8];
    let read = vec![3u8];
    vec![
        (
            "register-and-ping",
            seq(&[
                create.clone(),
                typed(&t, &memclnt::ControlPing::default()),
                turn.clone(),
                read.clone(),
            ]),
        ),
        (
            "unregistered-ping",
            typed(&t, &memclnt::ControlPing::default()),
        ),
        (
            "cli",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &vpe::CliInband {
                        cmd: "show api clients".into(),
                        ..Default::default()
                    },
                ),
                typed(
                    &t,
                    &vpe::CliInband {
                        cmd: "api trace on".into(),
                        ..Default::default()
                    },
                ),
                typed(
                    &t,
                    &vpe::CliInband {
                        cmd: "sh api counters".into(),
                        ..Default::default()
                    },
                ),
                turn.clone(),
                read.clone(),
            ]),
        ),
        (
            "pivot-sock-init-shm",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &memclnt::SockInitShm {
                        requested_size: 0,
                        ..Default::default()
                    },
                ),
                turn.clone(),
                read.clone(),
                turn.clone(),
                read.clone(),
            ]),
        ),
        (
            "pivot-memfd-twice",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &memfd::MemfdSegmentCreate {
                        requested_size: 1 << 20,
                        ..Default::default()
                    },
                ),
                typed(
                    &t,
                    &memfd::MemfdSegmentCreate {
                        requested_size: 1 << 20,
                        ..Default::default()
                    },
                ),
                turn.clone(),
            ]),
        ),
        (
            "pivot-with-bad-configs",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &memclnt::SockInitShm {
                        requested_size: 1 << 20,
                        nitems: 0,
                        configs: vec![u64::MAX, 0, 7],
                        ..Default::default()
                    },
                ),
            ]),
        ),
        (
            "example-plugin",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &ex::WantSwThingEvents {
                        enable: true,
                        pid: 1,
                        ..Default::default()
                    },
                ),
                typed(
                    &t,
                    &ex::SwThingAddDel {
                        is_add: true,
                        name: "x".into(),
                        count: 1,
                        enable: true,
                        ..Default::default()
                    },
                ),
                typed(&t, &ex::SwThingDump::default()),
                typed(
                    &t,
                    &ex::SwThingAddDel {
                        is_add: false,
                        name: "x".into(),
                        ..Default::default()
                    },
                ),
                turn.clone(),
                read.clone(),
            ]),
        ),
        (
            "delete-someone-else",
            seq(&[
                create.clone(),
                typed(
                    &t,
                    &memclnt::SockclntDelete {
                        index: 0x8000_0001,
                        ..Default::default()
                    },
                ),
            ]),
        ),
        (
            "delete-self-then-more",
            seq(&[
                create.clone(),
                typed(&t, &memclnt::SockclntDelete::default()),
                typed(&t, &memclnt::ControlPing::default()),
            ]),
        ),
        (
            "shm-registration-on-socket",
            typed(
                &t,
                &memclnt::MemclntCreate {
                    name: "x".into(),
                    ..Default::default()
                },
            ),
        ),
        (
            "api-json-unread",
            seq(&[
                create.clone(),
                typed(&t, &memclnt::GetApiJson::default()),
                typed(&t, &memclnt::GetApiJson::default()),
            ]),
        ),
        ("framing-too-large", raw(&header(u32::MAX))),
        ("framing-too-short", raw(&header(1))),
        (
            "half-frame",
            raw(&frame(&[0, 23, 0, 0, 0, 0, 0, 0, 0, 1])[..20]),
        ),
        (
            "unknown-id",
            raw(&frame(&[0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 1])),
        ),
        (
            "two-connections",
            seq(&[
                create.clone(),
                vec![5],
                create.clone(),
                vec![6],
                typed(&t, &memclnt::ControlPing::default()),
                vec![4],
            ]),
        ),
    ]
}

fn shm_reader() -> Vec<(String, Vec<u8>)> {
    // Operation bytes: see shm_reader's docs. Mode byte first: even raw, odd server.
    let mut v = Vec::new();
    for (mode, tag) in [(0u8, "raw"), (1u8, "server")] {
        let name = |s: &str| format!("{tag}-{s}");
        v.push((
            name("honest-both-ways"),
            vec![mode, 3, 10, 3, 200, 1, 6, 0, 4, 0, 20, 4, 0x10, 0, 2],
        ));
        // A queue element pointing at the header, then a receive.
        v.push((
            name("scribbled-request-queue"),
            vec![
                mode, 3, 10, 0, 2, 0, 0, 64, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 1, 1,
            ],
        ));
        v.push((
            name("filled-rings"),
            vec![mode, 3, 10, 7, 4, 0xff, 1, 3, 10, 7, 6, 0xff, 4, 0, 30, 2],
        ));
        v.push((
            name("filled-heap"),
            vec![
                mode, 4, 0x20, 0, 7, 7, 0xa5, 2, 3, 200, 3, 200, 3, 200, 3, 200, 3, 200, 3, 200, 1,
            ],
        ));
        v.push((
            name("header-reread"),
            vec![mode, 0, 1, 0, 56, 8, 1, 0, 0, 0, 0, 0, 0, 0, 5, 3, 3, 2],
        ));
        v.push((
            name("segment-header"),
            vec![mode, 7, 0, 0x41, 4, 0x10, 0, 1, 2, 5],
        ));
    }
    v.push((
        "server-register-keepalive-park".to_owned(),
        vec![1, 6, 0, 3, 10, 1, 6, 1, 6, 2, 6, 3, 4, 0, 100, 2],
    ));
    v
}
