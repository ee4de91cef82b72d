//! Shared memory holding arbitrary bytes: a channel is laid out in a fresh segment, then the
//! input overwrites parts of it (headers, queues, rings, heap, the segment header) between
//! honest sends and receives on both ends.
//!
//! Two modes, chosen by the first byte:
//! - **raw**: `ChannelLayout::create` in a segment; the server's ends are a `Sender` and a
//!   `Receiver` over its private layout, the client's are built from `ChannelLayout::read` of
//!   the (possibly scribbled) header, as a client attaching would;
//! - **server**: a `ShmServer` with one private channel (`create_private`); the harness maps
//!   the memfd as the client does and drives the server's receive path (`recv`), its sends and
//!   backlog, registration, the keepalive scan, parking and `info`.
//!
//! Nothing may panic, `ChannelLayout::read` may accept only layouts that lie inside the
//! segment, and every message either end receives must be bytes of the segment: the payload of
//! a buffer at an 8-aligned offset. (Checked on a copy of the segment taken after the receive:
//! freeing the buffer rewrites at most its 16-byte header, never the payload, and the copy is
//! only taken when a message arrived, which keeps the check cheap.)
//!
//! Operations (selector byte, then operands):
//! 0. patch: area byte, offset (u16), length byte, bytes;
//! 1. the server receives up to three messages;
//! 2. the client receives up to three messages;
//! 3. the client sends a message (length byte; the body is a pattern);
//! 4. the server sends a message (length u16, so large ones fall back to the heap);
//! 5. the client re-reads the channel header and, if it is accepted, re-attaches its ends;
//! 6. server bookkeeping (server mode: register, keepalive scan, info, park; raw: heap stats);
//! 7. fill: area byte, value byte: one whole area set to that byte.

use std::time::{Duration, Instant};

use svm::segment::{AttachOptions, Segment, SegmentOptions};
use vlibapi::ClientIndex;
use vlibmemory::channel::{ChannelLayout, Receiver, Sender};
use vlibmemory::config::{ChannelConfig, MSGBUF_HEADER, RingSpec};
use vlibmemory::server::{OPAQUE_ROOT, ShmConfig, ShmServer};
use vppinfra::sync::Arc;

use super::Input;

/// Segment size: small, so snapshots are cheap, yet with a heap for large messages.
const SEGMENT_SIZE: usize = 128 << 10;

/// How long any heap operation may wait for a lock word the input wrote.
const HEAP_LOCK_TIMEOUT: Duration = Duration::from_micros(200);

/// A small channel: two client rings (so misses move to the next ring), one server ring, short
/// queues (so they fill).
fn config() -> ChannelConfig {
    ChannelConfig {
        client_rings: vec![
            RingSpec {
                payload: 64,
                count: 4,
            },
            RingSpec {
                payload: 256,
                count: 2,
            },
        ],
        server_rings: vec![RingSpec {
            payload: 128,
            count: 4,
        }],
        request_queue: 8,
        reply_queue: 8,
    }
}

/// The client's ends, built from what it read in the header.
struct ClientEnds {
    tx: Sender,
    rx: Receiver,
}

fn client_ends(segment: &Arc<Segment>, layout: &ChannelLayout) -> Option<ClientEnds> {
    let tx = Sender::attach(segment.clone(), &layout.client_rings, layout.request).ok()?;
    let rx = Receiver::attach(
        segment.clone(),
        &layout.server_rings,
        layout.reply,
        Arc::new(layout.structures()),
    )
    .ok()?;
    Some(ClientEnds { tx, rx })
}

/// Reads the channel header as a client would; whatever it accepts must lie in the segment.
fn read_layout(segment: &Segment, base: usize) -> Option<ChannelLayout> {
    let layout = ChannelLayout::read(segment.region(), base).ok()?;
    for r in layout.structures() {
        assert!(
            segment.region().contains(r.start, r.len()),
            "ChannelLayout::read accepted a structure at {r:?} outside a segment of {} bytes",
            segment.size()
        );
    }
    Some(layout)
}

/// The byte ranges the patches address, by area number.
fn areas(segment: &Segment, layout: &ChannelLayout) -> [usize; 8] {
    [
        0,
        layout.base,
        layout.request.0,
        layout.reply.0,
        layout.client_rings[0].slots,
        layout.client_rings[layout.client_rings.len() - 1].slots,
        layout.server_rings[0].slots,
        segment.heap_range().start,
    ]
}

/// Length of an area for fills: up to the next area or a page.
const FILL_LEN: usize = 4096;

/// Asserts `msg` is in `segment` as the payload of a buffer: at an 8-aligned offset past a
/// 16-byte buffer header.
fn assert_from_segment(segment: &Segment, msg: &[u8], who: &str) {
    let mut image = vec![0u8; segment.size()];
    segment
        .region()
        .read(0, &mut image)
        .expect("the whole segment reads");
    let found = (MSGBUF_HEADER..image.len().saturating_sub(msg.len()) + 1)
        .step_by(8)
        .any(|p| &image[p..p + msg.len()] == msg);
    assert!(
        found,
        "{who} received {} bytes that are no buffer's payload in the segment",
        msg.len()
    );
}

/// A message of `len` bytes (at least an ID), recognisable in a dump.
fn message(len: usize, tag: u8) -> Vec<u8> {
    (0..len.max(2)).map(|i| tag ^ (i as u8)).collect()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() {
        Some(b) if b & 1 == 1 => server_mode(&mut input),
        _ => raw_mode(&mut input),
    }
}

fn raw_mode(input: &mut Input<'_>) {
    let mut segment = Segment::create(&SegmentOptions::new(SEGMENT_SIZE).name("fuzz"))
        .expect("a small segment can be created");
    segment.set_heap_lock_timeout(HEAP_LOCK_TIMEOUT);
    let segment = Arc::new(segment);
    let layout = ChannelLayout::create(&segment, &config()).expect("a small channel fits");
    let structures = Arc::new(layout.structures());
    let mut server_rx = Receiver::attach(
        segment.clone(),
        &layout.client_rings,
        layout.request,
        structures,
    )
    .expect("fresh queues attach");
    let mut server_tx = Sender::attach(segment.clone(), &layout.server_rings, layout.reply)
        .expect("fresh queues attach");
    let mut client = read_layout(&segment, layout.base)
        .and_then(|l| client_ends(&segment, &l))
        .expect("a fresh header reads back");
    let areas = areas(&segment, &layout);
    let mut buf = Vec::new();
    let mut tag = 0u8;
    while let Some(op) = input.byte() {
        tag = tag.wrapping_add(1);
        match op % 8 {
            0 => patch(&segment, &areas, input),
            1 => {
                for _ in 0..3 {
                    match server_rx.try_recv(&mut buf) {
                        Ok(true) => assert_from_segment(&segment, &buf, "the server"),
                        _ => break,
                    }
                }
            }
            2 => {
                for _ in 0..3 {
                    match client.rx.try_recv(&mut buf) {
                        Ok(true) => assert_from_segment(&segment, &buf, "the client"),
                        _ => break,
                    }
                }
            }
            3 => {
                let len = usize::from(input.byte().unwrap_or(0));
                let _ = client.tx.try_send(&message(len, tag));
            }
            4 => {
                let len = usize::from(input.u16() % 8192);
                let _ = server_tx.try_send(&message(len, tag));
            }
            5 => {
                if let Some(ends) =
                    read_layout(&segment, layout.base).and_then(|l| client_ends(&segment, &l))
                {
                    client = ends;
                }
            }
            6 => {
                let _ = segment.heap().stats();
                let _ = server_tx.queued();
                let _ = server_tx.stats();
            }
            _ => fill(&segment, &areas, input),
        }
    }
}

fn server_mode(input: &mut Input<'_>) {
    let config = ShmConfig {
        channel: config(),
        default_segment_size: SEGMENT_SIZE,
        max_backlog_bytes: 64 << 10,
        keepalive_interval: Duration::ZERO,
        ..ShmConfig::default()
    };
    let mut server = ShmServer::new(config, b"fuzz table".to_vec()).expect("no named segment");
    let socket = ClientIndex(0x8100_0001);
    let (id, fds) = server
        .create_private(socket, std::process::id(), 0, None)
        .expect("a private segment can be created");
    // The client's mapping of the segment: the harness scribbles through it, as a hostile
    // client would.
    let mut segment =
        Segment::attach(fds.memfd, &AttachOptions::default()).expect("the fresh segment attaches");
    segment.set_heap_lock_timeout(HEAP_LOCK_TIMEOUT);
    let segment = Arc::new(segment);
    let base = segment.opaque(OPAQUE_ROOT).expect("root offset") as usize;
    let layout = read_layout(&segment, base).expect("a fresh header reads back");
    let mut client = client_ends(&segment, &layout).expect("fresh queues attach");
    let areas = areas(&segment, &layout);
    let mut index = None;
    let mut buf = Vec::new();
    let mut tag = 0u8;
    while let Some(op) = input.byte() {
        tag = tag.wrapping_add(1);
        match op % 8 {
            0 => patch(&segment, &areas, input),
            1 => {
                for _ in 0..3 {
                    match server.recv(id, &mut buf) {
                        Ok(true) => assert_from_segment(&segment, &buf, "the server"),
                        _ => break,
                    }
                }
            }
            2 => {
                for _ in 0..3 {
                    match client.rx.try_recv(&mut buf) {
                        Ok(true) => assert_from_segment(&segment, &buf, "the client"),
                        _ => break,
                    }
                }
            }
            3 => {
                let len = usize::from(input.byte().unwrap_or(0));
                let _ = client.tx.try_send(&message(len, tag));
            }
            4 => {
                let len = usize::from(input.u16() % 8192);
                let msg = message(len, tag);
                let _ = match index {
                    Some(i) => server.send(i, &msg),
                    None => server.send_channel(id, &msg),
                };
                let _ = server.flush_backlogs();
            }
            5 => {
                if let Some(ends) =
                    read_layout(&segment, base).and_then(|l| client_ends(&segment, &l))
                {
                    client = ends;
                }
            }
            6 => match input.byte().unwrap_or(0) % 4 {
                0 => {
                    let i = server
                        .register(id, "fuzz", true)
                        .expect("the channel exists");
                    assert_eq!(server.channel_of(i), Some(id));
                    index = Some(i);
                }
                1 => {
                    let _ = server.keepalive_scan(Instant::now());
                }
                2 => {
                    let info = server.info(id).expect("the channel exists");
                    assert_eq!(info.id, id);
                }
                _ => {
                    if server.prepare_park().is_some() {
                        server.finish_park();
                    }
                }
            },
            _ => fill(&segment, &areas, input),
        }
    }
    let _ = server.flush_backlogs();
    assert!(server.remove(id).is_some(), "the channel vanished");
    assert!(server.is_empty());
}

fn patch(segment: &Segment, areas: &[usize; 8], input: &mut Input<'_>) {
    let area = areas[usize::from(input.byte().unwrap_or(0) % 8)];
    let offset = area + usize::from(input.u16());
    let len = usize::from(input.byte().unwrap_or(0));
    let bytes = input.take(len);
    let end = (offset + bytes.len()).min(segment.size());
    if offset < end {
        segment
            .region()
            .write(offset, &bytes[..end - offset])
            .expect("in bounds");
    }
}

fn fill(segment: &Segment, areas: &[usize; 8], input: &mut Input<'_>) {
    let area = areas[usize::from(input.byte().unwrap_or(0) % 8)];
    let value = input.byte().unwrap_or(0);
    let end = (area + FILL_LEN).min(segment.size());
    if area < end {
        segment
            .region()
            .write(area, &vec![value; end - area])
            .expect("in bounds");
    }
}
