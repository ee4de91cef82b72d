//! VPP's socket framing: a 16-byte header, then the message.
//!
//! ```text
//! 0        8               12              16
//! +--------+---------------+---------------+---------------------------+
//! | q (8)  | data_len (BE) | gc_mark (4)   | message (data_len bytes)  |
//! +--------+---------------+---------------+---------------------------+
//! ```
//!
//! `q` and `gc_mark` carry sender-internal data in VPP; receivers ignore both and we send zeros.
//! [`FrameReader`] reassembles frames across reads and splits many frames out of one read;
//! [`OutputBuffer`] queues outgoing frames and writes them in batches.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
use std::os::fd::AsFd;

use nix::errno::Errno;

/// Length of the frame header (`msgbuf_t` in VPP).
#[doc(alias = "msgbuf_t")]
pub const HEADER_LEN: usize = 16;

/// The smallest message: a 16-bit message ID.
pub const MIN_MESSAGE_LEN: usize = 2;

/// Default bound on one message's length (8 MiB).
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 8 << 20;

/// Encodes a frame header for a message of `len` bytes.
pub fn header(len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[8..12].copy_from_slice(&len.to_be_bytes());
    h
}

/// A framing violation: the connection's byte stream can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// `data_len` exceeds the configured maximum message length.
    TooLarge {
        /// The announced length.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// `data_len` is shorter than a message ID.
    TooShort {
        /// The announced length.
        len: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            Self::TooShort { len } => {
                write!(f, "frame of {len} bytes is shorter than a message id")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Outcome of reading from a socket into a [`FrameReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes arrived.
    Data(usize),
    /// Nothing to read now (`EAGAIN`).
    WouldBlock,
    /// The peer closed its end.
    Eof,
}

/// Reassembles frames from a byte stream.
///
/// Bytes are read straight into one buffer; complete frames are handed out as slices of it, so
/// a message is never copied on the way in. The buffer grows only to fit the largest frame seen.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of unconsumed bytes.
    start: usize,
    /// End of received bytes.
    end: usize,
    max_message_len: u32,
}

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 << 10;

impl FrameReader {
    /// A reader that rejects messages longer than `max_message_len`.
    pub fn new(max_message_len: u32) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_message_len,
        }
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Capacity held by the reader (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes (for tests and for transports that read elsewhere).
    pub fn push(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Makes room for at least `n` more bytes after `end`, compacting first.
    fn reserve(&mut self, n: usize) {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < n) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < n {
            let want = (self.end + n).next_power_of_two();
            self.buf.resize(want, 0);
        }
    }

    /// Releases memory after a burst of large frames, once nothing is buffered.
    pub fn shrink_if_idle(&mut self) {
        if self.start == self.end && self.buf.len() > 4 * READ_CHUNK {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `fd` (non-blocking sockets return [`ReadOutcome::WouldBlock`]).
    pub fn read_from(&mut self, fd: impl AsFd) -> Result<ReadOutcome, Errno> {
        // Ask for the rest of a partly received large frame in one go when we know its size.
        let want = match self.peek_len() {
            Some(len) if len > self.buffered() => (len - self.buffered()).max(READ_CHUNK),
            _ => READ_CHUNK,
        };
        self.read_at_most(fd, want, usize::MAX)
    }

    /// Reads once from `fd`, but never past the end of the next frame (its header first):
    /// for the moment when the bytes after a frame carry file descriptors, which a plain read
    /// reaching them would silently drop (the pivot reply, then the segment's fds).
    pub fn read_from_exact(&mut self, fd: impl AsFd) -> Result<ReadOutcome, Errno> {
        let want = match self.peek_len() {
            Some(len) => len.saturating_sub(self.buffered()),
            None if self.buffered() < HEADER_LEN => HEADER_LEN - self.buffered(),
            // An oversized announcement: next_frame reports it; nothing more is read.
            None => 0,
        };
        if want == 0 {
            return Ok(ReadOutcome::Data(0));
        }
        self.read_at_most(fd, want, want)
    }

    /// One read into room for `reserve` bytes, taking at most `limit` of them.
    fn read_at_most(
        &mut self,
        fd: impl AsFd,
        reserve: usize,
        limit: usize,
    ) -> Result<ReadOutcome, Errno> {
        self.reserve(reserve);
        let end = self.buf.len().min(self.end.saturating_add(limit));
        loop {
            match nix::unistd::read(fd.as_fd(), &mut self.buf[self.end..end]) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(ReadOutcome::Data(n));
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(ReadOutcome::WouldBlock),
                Err(e) => return Err(e),
            }
        }
    }

    /// True when [`FrameReader::next_frame`] would return a frame or an error now.
    pub fn frame_ready(&self) -> bool {
        if self.buffered() < HEADER_LEN {
            return false;
        }
        let len = self.announced_len();
        len > self.max_message_len
            || (len as usize) < MIN_MESSAGE_LEN
            || self.buffered() >= HEADER_LEN + len as usize
    }

    /// Total length (header + message) of the next frame, when its header has arrived and is
    /// within bounds.
    fn peek_len(&self) -> Option<usize> {
        if self.buffered() < HEADER_LEN {
            return None;
        }
        let len = self.announced_len();
        (len <= self.max_message_len).then_some(HEADER_LEN + len as usize)
    }

    fn announced_len(&self) -> u32 {
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        u32::from_be_bytes([h[8], h[9], h[10], h[11]])
    }

    /// The next complete message, if one has fully arrived.
    ///
    /// A framing error poisons the stream: the caller should drop the connection.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if self.buffered() < HEADER_LEN {
            return Ok(None);
        }
        let len = self.announced_len();
        if len > self.max_message_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_message_len,
            });
        }
        if (len as usize) < MIN_MESSAGE_LEN {
            return Err(FrameError::TooShort { len });
        }
        let total = HEADER_LEN + len as usize;
        if self.buffered() < total {
            return Ok(None);
        }
        let msg_start = self.start + HEADER_LEN;
        self.start += total;
        if self.start == self.end {
            // Everything consumed: the next read can start at the front.
            let (s, e) = (msg_start, msg_start + len as usize);
            self.start = 0;
            self.end = 0;
            return Ok(Some(&self.buf[s..e]));
        }
        Ok(Some(&self.buf[msg_start..msg_start + len as usize]))
    }
}

/// Outcome of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Everything queued has been written.
    Done,
    /// The socket is full; wait for writability.
    WouldBlock,
}

/// Outgoing frames for one connection, written in batches with `writev`.
///
/// Small frames are packed into shared chunks; a large frame gets a chunk of its own so that it
/// is never copied twice. The caller bounds the total with [`OutputBuffer::len`].
#[derive(Debug, Default)]
pub struct OutputBuffer {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    len: usize,
}

/// Frames up to this size are packed together.
const PACK_LIMIT: usize = 16 << 10;
/// Capacity of a chunk that packs small frames.
const PACK_CHUNK: usize = 64 << 10;
/// Chunks passed to one `writev`.
const MAX_IOVECS: usize = 64;

impl OutputBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one frame (header added here).
    pub fn push_frame(&mut self, msg: &[u8]) {
        let total = HEADER_LEN + msg.len();
        let h = header(msg.len() as u32);
        match self.chunks.back_mut() {
            Some(last) if total <= PACK_LIMIT && last.len() + total <= last.capacity() => {
                last.extend_from_slice(&h);
                last.extend_from_slice(msg);
            }
            _ => {
                let cap = if total <= PACK_LIMIT {
                    PACK_CHUNK
                } else {
                    total
                };
                let mut chunk = Vec::with_capacity(cap);
                chunk.extend_from_slice(&h);
                chunk.extend_from_slice(msg);
                self.chunks.push_back(chunk);
            }
        }
        self.len += total;
    }

    /// Writes as much as the socket takes.
    pub fn flush(&mut self, fd: impl AsFd) -> Result<FlushOutcome, Errno> {
        while !self.chunks.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_iov = 0;
            for (i, c) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                iov[i] = IoSlice::new(if i == 0 { &c[self.front_written..] } else { c });
                n_iov += 1;
            }
            let written = match send_iov(fd.as_fd(), &iov[..n_iov]) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(FlushOutcome::WouldBlock),
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        Ok(FlushOutcome::Done)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front_left = self.chunks[0].len() - self.front_written;
            if n >= front_left {
                n -= front_left;
                self.chunks.pop_front();
                self.front_written = 0;
            } else {
                self.front_written += n;
                n = 0;
            }
        }
    }
}

/// `sendmsg` with `MSG_NOSIGNAL`, so a peer that went away yields `EPIPE` rather than SIGPIPE.
fn send_iov(fd: std::os::fd::BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> Result<usize, Errno> {
    use std::os::fd::AsRawFd;
    nix::sys::socket::sendmsg::<()>(
        fd.as_raw_fd(),
        iov,
        &[],
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = header(msg.len() as u32).to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn header_layout_matches_vpp() {
        let h = header(0x01020304);
        assert_eq!(&h[..8], &[0; 8]);
        assert_eq!(&h[8..12], &[1, 2, 3, 4]);
        assert_eq!(&h[12..], &[0; 4]);
    }

    #[test]
    fn frames_split_at_every_byte_boundary_reassemble() {
        let msgs: Vec<Vec<u8>> = vec![vec![0, 23, 1, 2, 3, 4], vec![0, 7], (0..200).collect()];
        let stream: Vec<u8> = msgs.iter().flat_map(|m| frame(m)).collect();
        for cut1 in 0..stream.len() {
            for cut2 in [cut1, (cut1 + 7).min(stream.len()), stream.len()] {
                let mut r = FrameReader::new(1024);
                let mut got = Vec::new();
                for part in [&stream[..cut1], &stream[cut1..cut2], &stream[cut2..]] {
                    r.push(part);
                    while let Some(m) = r.next_frame().unwrap() {
                        got.push(m.to_vec());
                    }
                }
                assert_eq!(got, msgs, "cuts at {cut1},{cut2}");
                assert_eq!(r.buffered(), 0);
            }
        }
    }

    #[test]
    fn header_fields_q_and_gc_mark_are_ignored() {
        let mut f = frame(&[0, 1, 9]);
        f[..8].copy_from_slice(&u64::MAX.to_ne_bytes());
        f[12..16].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut r = FrameReader::new(64);
        r.push(&f);
        assert_eq!(r.next_frame().unwrap(), Some(&[0u8, 1, 9][..]));
    }

    #[test]
    fn oversized_and_undersized_frames_are_errors() {
        let mut r = FrameReader::new(100);
        r.push(&header(u32::MAX));
        assert_eq!(
            r.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 100
            })
        );
        for len in [0, 1] {
            let mut r = FrameReader::new(100);
            r.push(&header(len));
            assert_eq!(r.next_frame(), Err(FrameError::TooShort { len }));
        }
        let mut r = FrameReader::new(100);
        r.push(&header(100));
        assert_eq!(r.next_frame(), Ok(None), "a maximal frame is legal");
    }

    #[test]
    fn truncated_header_waits_for_more() {
        let mut r = FrameReader::new(100);
        r.push(&header(4)[..10]);
        assert_eq!(r.next_frame(), Ok(None));
        r.push(&header(4)[10..]);
        r.push(&[1, 2, 3]);
        assert_eq!(r.next_frame(), Ok(None));
        r.push(&[4]);
        assert_eq!(r.next_frame(), Ok(Some(&[1u8, 2, 3, 4][..])));
    }

    /// A frame, then five bytes carrying an fd (as the server sends after a pivot reply):
    /// the reader's end and the fd's file.
    fn frame_then_fd() -> (UnixStream, std::fs::File) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        std::io::Write::write_all(&mut &b, &frame(&[0, 7, 1, 2, 3])).unwrap();
        let carried = std::fs::File::open("/dev/null").unwrap();
        vppinfra::socket::send_with_fds(&b, b"fdmsg", &[carried.as_fd()]).unwrap();
        (a, carried)
    }

    #[test]
    fn an_exact_read_stops_at_the_end_of_the_frame_and_leaves_the_fds_in_the_socket() {
        let (a, _carried) = frame_then_fd();
        let mut r = FrameReader::new(1 << 20);
        while !r.frame_ready() {
            r.read_from_exact(&a).unwrap();
        }
        assert_eq!(r.next_frame().unwrap(), Some(&[0u8, 7, 1, 2, 3][..]));
        let mut buf = [0u8; 5];
        let (n, fds) = vppinfra::socket::recv_with_fds(&a, &mut buf, 1).unwrap();
        assert_eq!((n, &buf, fds.len()), (5, b"fdmsg", 1), "the fds survived");

        // Byte by byte as well: each read asks for what the frame still lacks, no more.
        let (a, _carried) = frame_then_fd();
        let mut r = FrameReader::new(1 << 20);
        assert_eq!(
            r.read_from_exact(&a).unwrap(),
            ReadOutcome::Data(HEADER_LEN)
        );
        assert!(!r.frame_ready());
        assert_eq!(r.read_from_exact(&a).unwrap(), ReadOutcome::Data(5));
        assert!(r.frame_ready());
        assert_eq!(r.read_from_exact(&a).unwrap(), ReadOutcome::Data(0));
        let (n, fds) = vppinfra::socket::recv_with_fds(&a, &mut buf, 1).unwrap();
        assert_eq!((n, fds.len()), (5, 1));
    }

    #[test]
    fn reads_from_socket_and_writes_back_in_batches() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut out = OutputBuffer::new();
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        out.push_frame(&[0, 1]);
        out.push_frame(&big);
        out.push_frame(&[0, 2, 3]);
        assert_eq!(out.len(), 3 * HEADER_LEN + 2 + big.len() + 3);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            b.read_to_end(&mut all).unwrap();
            all
        });
        loop {
            match out.flush(&a).unwrap() {
                FlushOutcome::Done => break,
                FlushOutcome::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        assert!(out.is_empty());
        drop(a);
        let bytes = reader.join().unwrap();
        let mut r = FrameReader::new(1 << 20);
        r.push(&bytes);
        assert_eq!(r.next_frame().unwrap(), Some(&[0u8, 1][..]));
        assert_eq!(r.next_frame().unwrap(), Some(&big[..]));
        assert_eq!(r.next_frame().unwrap(), Some(&[0u8, 2, 3][..]));
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn read_from_reports_eof_and_would_block() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut r = FrameReader::new(64);
        assert_eq!(r.read_from(&b), Ok(ReadOutcome::WouldBlock));
        nix::unistd::write(&a, &frame(&[0, 5])).unwrap();
        assert_eq!(r.read_from(&b), Ok(ReadOutcome::Data(18)));
        assert_eq!(r.next_frame().unwrap(), Some(&[0u8, 5][..]));
        drop(a);
        assert_eq!(r.read_from(&b), Ok(ReadOutcome::Eof));
    }
}
