//! Bodies of the fuzz targets: each `run(&[u8])` panics when it finds a bug and returns
//! quietly otherwise. Shared by the libFuzzer entry points (nightly) and the stable regression
//! tests, so they use only the workspace crates and `nix`.
#![allow(dead_code)]

pub mod decode_all;
pub mod frame_reader;
pub mod seeds;
pub mod server_socket;
pub mod shm_reader;

/// A target's body.
pub type Body = fn(&[u8]);

/// The targets, by name, for the regression runner.
pub const TARGETS: &[(&str, Body)] = &[
    ("frame_reader", frame_reader::run),
    ("decode_all", decode_all::run),
    ("server_socket", server_socket::run),
    ("shm_reader", shm_reader::run),
];

/// splitmix64: a tiny deterministic generator for the regression tests' inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Reads a fuzz input front to back; running out yields zeros and `None`s, never a panic.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, if any.
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next big-endian u16 (missing bytes read as zero).
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }

    /// The next big-endian u32 (missing bytes read as zero).
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([
            self.byte().unwrap_or(0),
            self.byte().unwrap_or(0),
            self.byte().unwrap_or(0),
            self.byte().unwrap_or(0),
        ])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}
