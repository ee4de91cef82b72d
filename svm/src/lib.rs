//! Shared virtual memory: the layer that maps memory two processes share, and the queue that
//! carries work between them. It knows nothing about API messages.
//!
//! - [`segment`]: memfd-backed segments (create, size, seal, map, header page with a `ready`
//!   handshake, attach from a received fd), and named segments in `/dev/shm` for attach-by-name.
//! - [`queue`]: a bounded, lock-free single-producer/single-consumer queue of fixed-size
//!   elements inside a segment (or any [`region::SharedRegion`]), safe against a peer that dies at
//!   any instruction or scribbles over the shared memory.
//! - [`notify`]: parking and waking across processes (futex or eventfd), and wait policies.
//! - [`region`]: the mapped memory both build on, viewed only through atomics.
//!
//! Every value read from shared memory is treated as hostile: indices are bounds-checked,
//! elements are copied out before anyone looks at them, and every wait on a word a peer controls
//! has a deadline.
//!
//! Choices worth knowing (see each module for the reasons):
//!
//! - Segments are position-independent; nothing depends on mapping at the creator's address.
//! - memfd segments are sealed against shrinking and growing, and then sealed against new seals;
//!   an attacher refuses a segment that could shrink. Named `/dev/shm` segments cannot be sealed
//!   and rely on file permissions: use them for trusted peers only.
//! - Queue capacities are powers of two and element sizes multiples of 8 bytes; elements are
//!   copied with relaxed atomic 64-bit accesses (sound under a concurrently writing peer, and as
//!   fast as `memcpy` for small elements).
//! - Each queue end keeps its own index privately and only reads the peer's; geometry is fixed
//!   per handle at attach time.
//!
//! Under `--cfg loom` the queue and the `ready` handshake run on process-local memory (loom's
//! atomics cannot live in a memfd), with the futex modelled by a mutex and a condition variable;
//! everything that maps memory is compiled out.

mod barrier;
mod futex;
pub mod notify;
pub mod queue;
#[cfg(not(loom))]
pub mod region;
#[cfg(not(loom))]
pub mod segment;
/// Under loom only the segment header and its `ready` handshake exist (process-local).
#[cfg(loom)]
#[path = "segment/header.rs"]
mod segment_header;
