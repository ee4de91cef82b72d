//! `FrameReader` over arbitrary byte streams cut at arbitrary points, half of the pieces pushed
//! directly and half read from a real socket, checked against a one-pass reference parser; the
//! frames then go back out through an `OutputBuffer` and must read back identically.
//!
//! Input: one byte choosing the maximum message length, then pieces: a control byte (low seven
//! bits: the piece's length; high bit: deliver it through the socket) and the piece's bytes.

use std::io::Write;
use std::os::unix::net::UnixStream;

use vlibsocket::frame::{
    FlushOutcome, FrameError, FrameReader, HEADER_LEN, MIN_MESSAGE_LEN, OutputBuffer, ReadOutcome,
};

use super::Input;

/// Maximum message lengths the input chooses from: the edges of the bounds, and one well above
/// a read's worth, so a large frame is read in one go. (Not the 8 MiB default: what differs is
/// only how much a frame may allocate, and the stable regression tests run unoptimised.)
const MAX_LENS: [u32; 8] = [2, 3, 16, 17, 64, 1000, 65536, 256 << 10];

/// Bytes the reader may ask of the kernel in one read (`READ_CHUNK` in vlibsocket).
const READ_CHUNK: usize = 64 << 10;

struct Sockets {
    /// Pieces are written here...
    tx: UnixStream,
    /// ...and read from here by the reader under test.
    rx: UnixStream,
    /// The round trip: the output buffer flushes here...
    out_tx: UnixStream,
    /// ...and a second reader takes the frames back from here.
    out_rx: UnixStream,
}

thread_local! {
    static SOCKETS: Sockets = {
        let (tx, rx) = UnixStream::pair().expect("socketpair");
        rx.set_nonblocking(true).expect("nonblocking");
        let (out_tx, out_rx) = UnixStream::pair().expect("socketpair");
        out_tx.set_nonblocking(true).expect("nonblocking");
        out_rx.set_nonblocking(true).expect("nonblocking");
        Sockets { tx, rx, out_tx, out_rx }
    };
}

/// The frames of `stream` parsed in one pass, and the framing error that ends it, if any.
fn reference(stream: &[u8], max: u32) -> (Vec<&[u8]>, Option<FrameError>) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        if stream.len() - pos < HEADER_LEN {
            return (frames, None);
        }
        let h = &stream[pos + 8..pos + 12];
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if len > max {
            return (frames, Some(FrameError::TooLarge { len, max }));
        }
        if (len as usize) < MIN_MESSAGE_LEN {
            return (frames, Some(FrameError::TooShort { len }));
        }
        let end = pos + HEADER_LEN + len as usize;
        if end > stream.len() {
            return (frames, None);
        }
        frames.push(&stream[pos + HEADER_LEN..end]);
        pos = end;
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max = MAX_LENS[usize::from(input.byte().unwrap_or(0) % 8)];
    SOCKETS.with(|s| run_with(&mut input, max, s));
}

fn run_with(input: &mut Input<'_>, max: u32, s: &Sockets) {
    let mut reader = FrameReader::new(max);
    let mut stream = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut error = None;
    let mut consumed = 0;
    let mut peak = 0;
    let mut used_socket = false;
    while !input.is_empty() && error.is_none() {
        let control = input.byte().unwrap_or(0);
        let piece = input.take(usize::from(control & 0x7f));
        stream.extend_from_slice(piece);
        if control & 0x80 != 0 && !piece.is_empty() {
            used_socket = true;
            (&s.tx)
                .write_all(piece)
                .expect("a small write to an empty socket");
            let mut arrived = 0;
            while arrived < piece.len() {
                match reader.read_from(&s.rx) {
                    Ok(ReadOutcome::Data(n)) => arrived += n,
                    other => panic!("read_from with {} bytes pending: {other:?}", piece.len()),
                }
            }
            assert_eq!(arrived, piece.len(), "read more than was written");
        } else {
            reader.push(piece);
        }
        peak = peak.max(reader.buffered());
        // Memory stays proportional to what is buffered (plus one read's worth from a socket).
        let slack = if used_socket {
            READ_CHUNK.max(HEADER_LEN + max as usize)
        } else {
            0
        };
        assert!(
            reader.capacity() <= 2 * (peak + slack).max(1),
            "capacity {} for a peak of {peak} buffered bytes",
            reader.capacity()
        );
        loop {
            let ready = reader.frame_ready();
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    assert!(ready, "frame_ready said no, next_frame gave a frame");
                    assert!(frame.len() >= MIN_MESSAGE_LEN && frame.len() <= max as usize);
                    consumed += HEADER_LEN + frame.len();
                    got.push(frame.to_vec());
                }
                Ok(None) => {
                    assert!(!ready, "frame_ready said yes, next_frame gave nothing");
                    break;
                }
                Err(e) => {
                    assert!(ready, "frame_ready said no, next_frame gave an error");
                    error = Some(e);
                    break;
                }
            }
        }
        if error.is_none() {
            assert_eq!(
                reader.buffered(),
                stream.len() - consumed,
                "bytes lost or invented"
            );
        }
        reader.shrink_if_idle();
    }
    let (want, want_error) = reference(&stream, max);
    assert_eq!(got, want, "frames differ from the one-pass parse");
    assert_eq!(
        error, want_error,
        "framing errors differ from the one-pass parse"
    );
    round_trip(&got, max, s);
}

/// Queues `frames` in an `OutputBuffer`, flushes them through a socket, and reads them back.
fn round_trip(frames: &[Vec<u8>], max: u32, s: &Sockets) {
    let mut out = OutputBuffer::new();
    for f in frames {
        out.push_frame(f);
    }
    let total: usize = frames.iter().map(|f| HEADER_LEN + f.len()).sum();
    assert_eq!(out.len(), total);
    let mut back = FrameReader::new(max);
    let mut again: Vec<Vec<u8>> = Vec::new();
    loop {
        let flushed = out.flush(&s.out_tx).expect("flush to a live socket");
        loop {
            match back.read_from(&s.out_rx).expect("read from a live socket") {
                ReadOutcome::Data(_) => {}
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => panic!("round-trip socket closed"),
            }
            while let Some(f) = back.next_frame().expect("our own frames are well formed") {
                again.push(f.to_vec());
            }
        }
        if flushed == FlushOutcome::Done {
            break;
        }
    }
    assert!(out.is_empty());
    assert_eq!(again, frames, "frames changed on the way out and back");
    assert_eq!(back.buffered(), 0);
}
