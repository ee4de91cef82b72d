//! Codec and dispatch costs, each beside a baseline measured in the same run.
//!
//! `cargo xtask bench codec` (or `cargo bench -p vlibapi --bench codec`). Without `--bench`
//! (`cargo test --benches`) it runs in smoke mode.

use std::hint::black_box;

use vlibapi::msgs::{memclnt, testapi};
use vlibapi::schema::Schema;
use vlibapi::value;
use vlibapi::wire::Message;
use vlibapi::{ApiBuilder, ClientIndex, MessageTable, Outbox, SendError};
use vppinfra::bench::Bench;

/// Takes every message and drops it, like a transport with infinite room.
struct NullOutbox(usize);

impl Outbox for NullOutbox {
    fn send(&mut self, _to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        self.0 += black_box(msg.len());
        Ok(())
    }
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        f(ClientIndex(1));
    }
}

/// Copies `bytes` into a reused buffer and back out: the floor any codec pays.
fn copy_baseline(b: &mut Bench, name: &str, ops: u64, bytes: &[u8]) -> vppinfra::bench::Summary {
    let mut buf = Vec::with_capacity(bytes.len());
    let mut back = vec![0u8; bytes.len()];
    b.run(name, ops, |n| {
        for _ in 0..n {
            buf.clear();
            buf.extend_from_slice(black_box(bytes));
            back.copy_from_slice(&buf);
            black_box(&back);
        }
    })
}

fn main() {
    let mut b = Bench::from_args("codec");
    let table = MessageTable::with_core();

    // control_ping: encode + decode.
    let ping = memclnt::ControlPing {
        client_index: 0x8000_0001,
        context: 7,
    };
    let ping_bytes = vlibapi::wire::to_vec(&ping, 23).unwrap();
    let base = copy_baseline(
        &mut b,
        "baseline: copy 10 bytes in and out",
        20_000_000,
        &ping_bytes,
    );
    let mut buf = Vec::with_capacity(64);
    b.run_vs("control_ping encode+decode", 20_000_000, &base, |n| {
        for i in 0..n {
            buf.clear();
            let mut m = black_box(&ping).clone();
            m.context = i as u32;
            m.encode(23, &mut buf).unwrap();
            black_box(memclnt::ControlPing::decode(black_box(&buf)).unwrap());
        }
    });

    // sockclnt_create_reply with 1,000 table entries.
    let entries = (1..=1000u16)
        .map(|i| memclnt::MessageTableEntry {
            index: i,
            name: format!("some_message_name_{i}_0123abcd"),
        })
        .collect::<Vec<_>>();
    let reply = memclnt::SockclntCreateReply {
        client_index: 0,
        context: 124,
        response: 0,
        index: 0x8000_0001,
        count: 1000,
        message_table: entries,
    };
    let reply_bytes = vlibapi::wire::to_vec(&reply, 16).unwrap();
    let base = copy_baseline(
        &mut b,
        "baseline: copy 66,020 bytes in and out",
        20_000,
        &reply_bytes,
    );
    let mut buf = Vec::with_capacity(reply_bytes.len());
    b.run_vs("sockclnt_create_reply x1000 encode", 20_000, &base, |n| {
        for _ in 0..n {
            buf.clear();
            black_box(&reply).encode(16, &mut buf).unwrap();
            black_box(&buf);
        }
    });
    b.run_vs("sockclnt_create_reply x1000 decode", 20_000, &base, |n| {
        for _ in 0..n {
            black_box(memclnt::SockclntCreateReply::decode(black_box(&reply_bytes)).unwrap());
        }
    });

    // A 64-field message (context + 63 scalars of every base type).
    let wide = testapi::Wide64 {
        context: 1,
        f00: 1,
        f03: u64::MAX,
        f08: true,
        f62: 7,
        ..Default::default()
    };
    let id = 100;
    let wide_bytes = vlibapi::wire::to_vec(&wide, id).unwrap();
    let base = copy_baseline(
        &mut b,
        &format!("baseline: copy {} bytes in and out", wide_bytes.len()),
        5_000_000,
        &wide_bytes,
    );
    let mut buf = Vec::with_capacity(wide_bytes.len());
    b.run_vs("wide64 encode+decode", 5_000_000, &base, |n| {
        for _ in 0..n {
            buf.clear();
            black_box(&wide).encode(id, &mut buf).unwrap();
            black_box(testapi::Wide64::decode(black_box(&buf)).unwrap());
        }
    });

    // The dynamic codec on the same messages, for comparison with the generated one.
    let schema: &Schema = table.schema();
    let ping_def = schema.message("control_ping").unwrap();
    let reply_def = schema.message("sockclnt_create_reply").unwrap();
    let base = copy_baseline(
        &mut b,
        "baseline: copy 10 bytes in and out (again)",
        2_000_000,
        &ping_bytes,
    );
    b.run_vs("control_ping dynamic decode", 2_000_000, &base, |n| {
        for _ in 0..n {
            black_box(value::decode_message(schema, ping_def, black_box(&ping_bytes)).unwrap());
        }
    });
    let base = copy_baseline(
        &mut b,
        "baseline: copy 66,020 bytes (again)",
        2_000,
        &reply_bytes,
    );
    b.run_vs(
        "sockclnt_create_reply x1000 dynamic decode",
        2_000,
        &base,
        |n| {
            for _ in 0..n {
                black_box(
                    value::decode_message(schema, reply_def, black_box(&reply_bytes)).unwrap(),
                );
            }
        },
    );

    // Dispatch: the per-message cost of the table lookup, decode and handler call, with a
    // handler that sends nothing; then the full control_ping round trip.
    let mut quiet = ApiBuilder::new();
    quiet
        .handle_stream(|_ctx, req: memclnt::ControlPing| {
            black_box(req);
            Ok(())
        })
        .unwrap();
    let mut quiet = quiet.build();
    let mut full = ApiBuilder::new();
    full.add_memclnt_handlers(std::process::id()).unwrap();
    let mut full = full.build();
    let mut out = NullOutbox(0);
    let reply_len = memclnt::ControlPingReply::MIN_SIZE;
    let mut round_trip_bytes = ping_bytes.clone();
    round_trip_bytes.resize(ping_bytes.len() + reply_len, 0);
    let base = copy_baseline(
        &mut b,
        "baseline: copy 28 bytes (request + reply) in and out",
        20_000_000,
        &round_trip_bytes,
    );
    b.run_vs(
        "dispatch control_ping, handler sends nothing",
        20_000_000,
        &base,
        |n| {
            for _ in 0..n {
                quiet
                    .dispatch(ClientIndex(1), black_box(&ping_bytes), &mut out)
                    .unwrap();
            }
        },
    );
    b.run_vs(
        "control_ping decode+dispatch+encode round trip",
        20_000_000,
        &base,
        |n| {
            for _ in 0..n {
                full.dispatch(ClientIndex(1), black_box(&ping_bytes), &mut out)
                    .unwrap();
            }
        },
    );
    assert!(out.0 > 0);
}
