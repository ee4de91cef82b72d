//! Message trace: a ring of the most recent messages per direction.
//!
//! Each record is a copy of the message bytes, the client and the time since the trace was
//! created. A trace can be dumped as text (pretty-printed through the dynamic codec), saved to
//! any `std::io::Write` and loaded back from any `std::io::Read` for replay. vlibapi opens no
//! files; the caller supplies the stream.
//!
//! # Save format
//!
//! A sequence of records, each a big-endian u32 length followed by that many message bytes
//! (the per-message framing of VPP's save files, without their header).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::dispatch::ClientIndex;
use crate::pretty;
use crate::table::MessageTable;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from a client.
    Rx,
    /// Sent to a client.
    Tx,
}

/// One traced message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// The client it came from or went to.
    pub client: ClientIndex,
    /// When, relative to the trace's creation.
    pub at: Duration,
    /// A copy of the message.
    pub bytes: Vec<u8>,
}

/// The ring of one direction.
#[derive(Debug, Clone)]
pub struct TraceRing {
    enabled: bool,
    capacity: usize,
    records: VecDeque<TraceRecord>,
    total: u64,
}

impl TraceRing {
    /// A disabled ring keeping at most `capacity` messages.
    pub fn new(capacity: usize) -> TraceRing {
        TraceRing {
            enabled: false,
            capacity,
            records: VecDeque::new(),
            total: 0,
        }
    }

    /// True while recording.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Turns recording on or off; the kept records stay.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Records a message if enabled. Once full, the oldest record's buffer is reused.
    pub fn record(&mut self, client: ClientIndex, at: Duration, bytes: &[u8]) {
        if !self.enabled || self.capacity == 0 {
            return;
        }
        self.total += 1;
        let mut rec = if self.records.len() >= self.capacity {
            self.records.pop_front().unwrap_or(TraceRecord {
                client,
                at,
                bytes: Vec::new(),
            })
        } else {
            TraceRecord {
                client,
                at,
                bytes: Vec::with_capacity(bytes.len()),
            }
        };
        rec.client = client;
        rec.at = at;
        rec.bytes.clear();
        rec.bytes.extend_from_slice(bytes);
        self.records.push_back(rec);
    }

    /// The kept records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &TraceRecord> {
        self.records.iter()
    }

    /// Number of kept records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Messages recorded since creation, including those the ring has dropped.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True once the ring has dropped a record.
    pub fn wrapped(&self) -> bool {
        self.total > self.records.len() as u64
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        self.records.clear();
        self.total = 0;
    }
}

/// Both rings.
#[derive(Debug, Clone)]
pub struct Trace {
    epoch: Instant,
    /// Received messages.
    pub rx: TraceRing,
    /// Sent messages.
    pub tx: TraceRing,
}

impl Trace {
    /// Disabled rings of `capacity` messages each.
    pub fn new(capacity: usize) -> Trace {
        Trace {
            epoch: Instant::now(),
            rx: TraceRing::new(capacity),
            tx: TraceRing::new(capacity),
        }
    }

    /// The ring of one direction.
    pub fn ring(&self, dir: Direction) -> &TraceRing {
        match dir {
            Direction::Rx => &self.rx,
            Direction::Tx => &self.tx,
        }
    }

    /// The ring of one direction, mutably.
    pub fn ring_mut(&mut self, dir: Direction) -> &mut TraceRing {
        match dir {
            Direction::Rx => &mut self.rx,
            Direction::Tx => &mut self.tx,
        }
    }

    /// Turns both directions on or off.
    #[doc(alias = "vl_msg_api_trace_onoff")]
    pub fn set_enabled(&mut self, on: bool) {
        self.rx.set_enabled(on);
        self.tx.set_enabled(on);
    }

    /// Records a message in one direction (if that direction is enabled).
    #[inline]
    pub fn record(&mut self, dir: Direction, client: ClientIndex, bytes: &[u8]) {
        if self.ring(dir).is_enabled() {
            let at = self.epoch.elapsed();
            self.ring_mut(dir).record(client, at, bytes);
        }
    }

    /// One line per kept record: time, client, and the message pretty-printed.
    pub fn dump(&self, dir: Direction, table: &MessageTable) -> String {
        let ring = self.ring(dir);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} trace: {} kept, {} total{}",
            match dir {
                Direction::Rx => "rx",
                Direction::Tx => "tx",
            },
            ring.len(),
            ring.total(),
            if ring.wrapped() { ", wrapped" } else { "" }
        );
        for r in ring.records() {
            let _ = writeln!(
                s,
                "{:>10.6}s client {:#010x}: {}",
                r.at.as_secs_f64(),
                r.client.0,
                pretty::format_message(table, &r.bytes)
            );
        }
        s
    }

    /// Writes one direction's records in the save format.
    #[doc(alias = "vl_msg_api_trace_save")]
    pub fn save(&self, dir: Direction, w: &mut dyn Write) -> io::Result<()> {
        for r in self.ring(dir).records() {
            save_one(w, &r.bytes)?;
        }
        Ok(())
    }
}

/// Writes one message in the save format.
pub fn save_one(w: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

/// Why a saved trace could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceLoadError {
    /// The stream failed.
    Io(io::Error),
    /// A record claims more bytes than the limit allows.
    TooLong {
        /// Index of the record.
        record: usize,
        /// Its length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// The stream ends inside a record.
    Truncated {
        /// Index of the record.
        record: usize,
    },
}

impl fmt::Display for TraceLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceLoadError::Io(e) => write!(f, "trace load: {e}"),
            TraceLoadError::TooLong { record, len, max } => {
                write!(f, "trace load: record {record} is {len} bytes, limit {max}")
            }
            TraceLoadError::Truncated { record } => {
                write!(f, "trace load: stream ends inside record {record}")
            }
        }
    }
}

impl std::error::Error for TraceLoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceLoadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads records in the save format until the end of the stream. A record longer than
/// `max_len` is refused before anything is allocated for it.
pub fn load(r: &mut dyn Read, max_len: usize) -> Result<Vec<Vec<u8>>, TraceLoadError> {
    let mut out = Vec::new();
    loop {
        let record = out.len();
        let mut len = [0u8; 4];
        match read_full(r, &mut len).map_err(TraceLoadError::Io)? {
            0 => return Ok(out),
            4 => {}
            _ => return Err(TraceLoadError::Truncated { record }),
        }
        let len = u32::from_be_bytes(len);
        if len as usize > max_len {
            return Err(TraceLoadError::TooLong {
                record,
                len,
                max: max_len,
            });
        }
        let mut bytes = vec![0u8; len as usize];
        if read_full(r, &mut bytes).map_err(TraceLoadError::Io)? != bytes.len() {
            return Err(TraceLoadError::Truncated { record });
        }
        out.push(bytes);
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_n() {
        let mut ring = TraceRing::new(2);
        ring.record(ClientIndex(1), Duration::ZERO, b"a");
        assert!(ring.is_empty(), "disabled rings record nothing");
        ring.set_enabled(true);
        for m in [b"a", b"b", b"c"] {
            ring.record(ClientIndex(1), Duration::ZERO, m);
        }
        let kept: Vec<_> = ring.records().map(|r| r.bytes.clone()).collect();
        assert_eq!(kept, [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(ring.total(), 3);
        assert!(ring.wrapped());
        ring.clear();
        assert!(ring.is_empty() && !ring.wrapped());
    }

    #[test]
    fn save_and_load() {
        let mut t = Trace::new(8);
        t.set_enabled(true);
        t.record(
            Direction::Rx,
            ClientIndex(3),
            &[0, 23, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        t.record(Direction::Rx, ClientIndex(3), &[]);
        let mut file = Vec::new();
        t.save(Direction::Rx, &mut file).unwrap();
        assert_eq!(&file[..4], &[0, 0, 0, 10]);
        let back = load(&mut &file[..], 1024).unwrap();
        assert_eq!(back, [vec![0, 23, 0, 0, 0, 0, 0, 0, 0, 1], vec![]]);
        for end in 1..file.len() {
            if end == 14 {
                continue; // a record boundary
            }
            assert!(matches!(
                load(&mut &file[..end], 1024),
                Err(TraceLoadError::Truncated { .. })
            ));
        }
        assert!(matches!(
            load(&mut &[0xff, 0xff, 0xff, 0xff][..], 1024),
            Err(TraceLoadError::TooLong { len: u32::MAX, .. })
        ));
    }
}
