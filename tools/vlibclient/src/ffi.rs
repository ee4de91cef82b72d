//! The C ABI of `libvlibclient.so`, declared in `include/vlibclient.h` (keep the two in step;
//! `tests/header.rs` checks that every function here is declared there).
//!
//! Every function returns `VLC_OK` (0) or a negative `VLC_E_*` code and, on failure, leaves a
//! message for [`vlc_last_error`] in the calling thread. Each body runs inside
//! `catch_unwind`, so a Rust panic becomes `VLC_E_PANIC` and never unwinds into C.
//!
//! # Safety
//!
//! The module's invariants, on which every `unsafe` block below relies:
//!
//! 1. **Handles.** A `vlc_conn_t *` is a `Box<Handle>` turned into a raw pointer by
//!    `vlc_connect` (or `vlc_attach_shm`) and turned back into a box only by `vlc_disconnect`.
//!    Every other function only borrows it, as `&Handle` (the handle is `Sync`: its state is
//!    behind locks). The header states the caller's side: pass only pointers obtained from
//!    `vlc_connect`, never after `vlc_disconnect`, and never call `vlc_disconnect` while
//!    another call on the same handle is running.
//! 2. **Message buffers.** A message pointer points `PREFIX` bytes past the start of a
//!    `Box<[u64]>` made by `buffer_new`. Word 0 holds `MAGIC` in its upper half and the
//!    allocation's length in words in its lower half; word 1 holds the message length; the
//!    message follows. Only `buffer_take` turns such a pointer back into the box, after
//!    checking the magic (and clearing it, so a double free is usually caught). The caller
//!    owns a buffer from `vlc_msg_alloc` or `vlc_read` until it passes it to `vlc_msg_write`
//!    or `vlc_msg_free`, and promises not to touch it afterwards.
//! 3. **Caller memory.** Strings are NUL-terminated and readable; `data`/`len` pairs are
//!    readable for `len` bytes; out-pointers are writable. Each is checked for NULL here; the
//!    rest is the caller's promise, stated in the header.
//! 4. **Callbacks.** A receive callback and its `user` pointer may be called from the library's
//!    thread until the callback is replaced or the handle is disconnected, and the callback
//!    does not unwind (the header says so).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::conn::{
    AttachError, ConnectError, Connection, PivotError, RecvError, SendError, ShmRegisterError,
    TransportKind, Wait,
};
use crate::handle::{Handle, HandleOptions, ReadError};

/// Success.
pub const VLC_OK: c_int = 0;
/// A NULL or otherwise invalid argument.
pub const VLC_E_INVAL: c_int = -1;
/// The server could not be reached or refused the registration.
pub const VLC_E_CONNECT: c_int = -2;
/// Nothing happened within the timeout.
pub const VLC_E_TIMEOUT: c_int = -3;
/// The server closed the connection (or it broke).
pub const VLC_E_DISCONNECTED: c_int = -4;
/// The server's message table has no such message.
pub const VLC_E_UNKNOWN_MSG: c_int = -5;
/// The server broke the protocol (bad frame, bad handshake).
pub const VLC_E_PROTOCOL: c_int = -6;
/// A system call failed.
pub const VLC_E_OS: c_int = -7;
/// The server does not offer it (shared memory: the server's table lacks the messages).
pub const VLC_E_NOT_AVAILABLE: c_int = -8;
/// A receive callback is installed, so `vlc_read` is disabled.
pub const VLC_E_CALLBACK_MODE: c_int = -9;
/// An internal error (a Rust panic, caught).
pub const VLC_E_PANIC: c_int = -10;

/// `vlc_send`/`vlc_msg_write` flag: more messages follow; buffer instead of writing now.
pub const VLC_SEND_MORE: c_int = 1;

/// `vlc_transport`: the API socket.
pub const VLC_TRANSPORT_SOCKET: c_int = 0;
/// `vlc_transport`: shared memory.
pub const VLC_TRANSPORT_SHM: c_int = 1;

/// Connection settings (`vlc_options_t`). Zero fields take the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VlcOptions {
    /// `sizeof(vlc_options_t)` as the caller knows it, so fields can be added later.
    pub struct_size: u32,
    /// Registration and blocked-send timeout in ms (default 5000).
    pub timeout_ms: u32,
    /// Longest message accepted from the server (default 64 MiB).
    pub max_msg_len: u32,
    /// How often the background thread looks for pings while nobody reads, ms (default 100).
    pub idle_poll_ms: u32,
    /// Bytes the background thread may queue for a program that does not read (default 64 MiB).
    pub rx_queue_limit: u64,
}

/// A receive callback (`vlc_rx_fn`).
pub type VlcRxFn = unsafe extern "C" fn(user: *mut c_void, msg: *const c_void, len: usize);

/// The opaque connection handle (`vlc_conn_t`).
pub type VlcConn = Handle;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(code: c_int, msg: impl std::fmt::Display) -> c_int {
    let text = msg.to_string().replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
    code
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Runs an entry point's body; a panic becomes `VLC_E_PANIC`.
fn guard(f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(p) => set_error(VLC_E_PANIC, format!("internal error: {}", panic_text(&*p))),
    }
}

fn connect_code(e: &ConnectError) -> c_int {
    match e {
        ConnectError::Socket { .. } | ConnectError::Refused { .. } => VLC_E_CONNECT,
        ConnectError::InvalidName(_) => VLC_E_INVAL,
        ConnectError::Timeout => VLC_E_TIMEOUT,
        ConnectError::ServerGone => VLC_E_DISCONNECTED,
        ConnectError::Os(_) => VLC_E_OS,
        _ => VLC_E_PROTOCOL,
    }
}

fn send_code(e: &SendError) -> c_int {
    match e {
        SendError::BadLength { .. } => VLC_E_INVAL,
        SendError::Timeout => VLC_E_TIMEOUT,
        SendError::Corrupt => VLC_E_PROTOCOL,
        SendError::Os(_) => VLC_E_OS,
        _ => VLC_E_DISCONNECTED,
    }
}

fn register_code(e: &ShmRegisterError) -> c_int {
    match e {
        ShmRegisterError::InvalidName(_) => VLC_E_INVAL,
        ShmRegisterError::UnknownMessage(_) => VLC_E_NOT_AVAILABLE,
        ShmRegisterError::Send(s) => send_code(s),
        ShmRegisterError::Recv(r) => recv_code(r),
        ShmRegisterError::Timeout => VLC_E_TIMEOUT,
        ShmRegisterError::Refused { .. } => VLC_E_CONNECT,
        _ => VLC_E_PROTOCOL,
    }
}

fn pivot_code(e: &PivotError) -> c_int {
    match e {
        PivotError::AlreadyShm | PivotError::InsideCallback | PivotError::BadSize(_) => VLC_E_INVAL,
        PivotError::UnknownMessage(_) => VLC_E_NOT_AVAILABLE,
        PivotError::Send(s) => send_code(s),
        PivotError::Recv(r) => recv_code(r),
        PivotError::Timeout { .. } => VLC_E_TIMEOUT,
        PivotError::Refused { .. } => VLC_E_CONNECT,
        PivotError::Register(r) => register_code(r),
        _ => VLC_E_PROTOCOL,
    }
}

fn attach_code(e: &AttachError) -> c_int {
    match e {
        AttachError::Shm(_) | AttachError::ServerGone => VLC_E_CONNECT,
        AttachError::Os(_) => VLC_E_OS,
        AttachError::Register(r) => register_code(r),
        _ => VLC_E_PROTOCOL,
    }
}

fn recv_code(e: &RecvError) -> c_int {
    match e {
        RecvError::ServerGone => VLC_E_DISCONNECTED,
        RecvError::Keepalive(s) => send_code(s),
        RecvError::Os(_) => VLC_E_OS,
        _ => VLC_E_PROTOCOL,
    }
}

// ---------------------------------------------------------------------------------------------
// Message buffers (invariant 2)

/// Bytes before the message: two words of bookkeeping, later overwritten by the socket frame
/// header (also 16 bytes), so a message goes out without a copy.
const PREFIX: usize = 16;
const PREFIX_WORDS: usize = PREFIX / 8;
const MAGIC: u64 = 0x766c_6301; // "vlc\x01"

/// A new buffer for a `len`-byte message (zeroed); returns the message pointer.
fn buffer_new(len: usize) -> *mut c_void {
    let n_words = PREFIX_WORDS + len.div_ceil(8);
    let mut words = vec![0u64; n_words].into_boxed_slice();
    words[0] = (MAGIC << 32) | n_words as u64;
    words[1] = len as u64;
    let base = Box::into_raw(words).cast::<u64>();
    // SAFETY: `base` points to `n_words >= PREFIX_WORDS` words just allocated, so the pointer
    // `PREFIX_WORDS` words in is within (or one past the end of) the same allocation.
    let msg = unsafe { base.add(PREFIX_WORDS) };
    msg.cast()
}

/// A new buffer holding a copy of `m`.
fn buffer_from(m: &[u8]) -> *mut c_void {
    let p = buffer_new(m.len());
    // SAFETY: `buffer_new` made room for `m.len()` bytes at `p`, in a fresh allocation that
    // cannot overlap `m`.
    unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), p.cast::<u8>(), m.len()) };
    p
}

/// Takes a buffer back from the caller: the whole allocation (prefix included) and the
/// message length. `None` if the magic does not match (not ours, or freed already).
///
/// # Safety
///
/// `msg` is non-NULL and came from `buffer_new`, and the caller gives up its ownership
/// (invariant 2).
unsafe fn buffer_take(msg: *mut c_void) -> Option<(Box<[u64]>, usize)> {
    // SAFETY: by the caller's promise `msg` is `PREFIX_WORDS` words into an allocation from
    // `buffer_new`, so stepping back stays within it.
    let base = unsafe { msg.cast::<u64>().sub(PREFIX_WORDS) };
    // SAFETY: `base` is the start of a live allocation of at least `PREFIX_WORDS` words,
    // aligned for u64 (a boxed `[u64]`).
    let word0 = unsafe { base.read() };
    if word0 >> 32 != MAGIC {
        return None;
    }
    let n_words = (word0 & 0xffff_ffff) as usize;
    // SAFETY: as above; word 1 is within the prefix.
    let len = unsafe { base.wrapping_add(1).read() } as usize;
    // SAFETY: clear the magic so a second take of the same pointer fails; `base` is valid
    // for writes (the caller owns the buffer).
    unsafe { base.write(0) };
    let slice = std::ptr::slice_from_raw_parts_mut(base, n_words);
    // SAFETY: `slice` is exactly the `Box<[u64]>` that `buffer_new` leaked (same pointer and
    // length), and ownership comes back here once (the magic was set until just now).
    let words = unsafe { Box::from_raw(slice) };
    Some((words, len))
}

/// The bytes of a taken buffer: prefix and message.
fn buffer_bytes(words: &mut [u64], len: usize) -> &mut [u8] {
    let total = PREFIX + len;
    debug_assert!(total <= words.len() * 8);
    let p = words.as_mut_ptr().cast::<u8>();
    // SAFETY: `words` is an exclusively borrowed, initialised allocation of `words.len() * 8`
    // bytes, and `total` never exceeds it (`buffer_new` sized it for `len`); u8 has no
    // alignment or validity requirements.
    unsafe { std::slice::from_raw_parts_mut(p, total) }
}

// ---------------------------------------------------------------------------------------------
// Argument helpers (invariants 1 and 3)

/// Borrows a handle.
///
/// # Safety
///
/// `c` is NULL or a live handle from `vlc_connect` (invariant 1).
unsafe fn handle<'a>(c: *const VlcConn) -> Result<&'a Handle, c_int> {
    if c.is_null() {
        return Err(set_error(VLC_E_INVAL, "connection handle is null"));
    }
    // SAFETY: non-NULL, and by the caller's promise a live `Box<Handle>` not being freed.
    Ok(unsafe { &*c })
}

/// Reads a NUL-terminated UTF-8 string.
///
/// # Safety
///
/// `s` is NULL or a readable NUL-terminated string (invariant 3).
unsafe fn string<'a>(s: *const c_char, what: &str) -> Result<&'a str, c_int> {
    if s.is_null() {
        return Err(set_error(VLC_E_INVAL, format!("{what} is null")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str()
        .map_err(|_| set_error(VLC_E_INVAL, format!("{what} is not utf-8")))
}

/// The options, with defaults for zero or missing fields.
///
/// # Safety
///
/// `opts` is NULL or readable for `opts->struct_size` bytes (invariant 3).
unsafe fn options(name: &str, opts: *const VlcOptions) -> HandleOptions {
    let mut o = HandleOptions::new(name);
    if opts.is_null() {
        return o;
    }
    // `struct_size` is the first field of the repr(C) struct, at offset 0.
    let size_field = opts.cast::<u32>();
    // SAFETY: non-NULL; the first field is readable whatever the caller's struct version.
    let size = unsafe { size_field.read_unaligned() } as usize;
    let mut given = VlcOptions::default();
    let n = size.min(std::mem::size_of::<VlcOptions>());
    // SAFETY: the caller promised `size` readable bytes at `opts`; we copy at most that many
    // into a local of at least that size, and every bit pattern is a valid VlcOptions.
    unsafe {
        std::ptr::copy_nonoverlapping(
            opts.cast::<u8>(),
            std::ptr::addr_of_mut!(given).cast::<u8>(),
            n,
        )
    };
    if given.timeout_ms != 0 {
        o.connect.timeout = Duration::from_millis(u64::from(given.timeout_ms));
    }
    if given.max_msg_len != 0 {
        o.connect.max_message_len = given.max_msg_len;
    }
    if given.idle_poll_ms != 0 {
        o.idle_poll = Duration::from_millis(u64::from(given.idle_poll_ms));
    }
    if given.rx_queue_limit != 0 {
        o.rx_queue_limit = usize::try_from(given.rx_queue_limit).unwrap_or(usize::MAX);
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Connects to the API socket at `path` as `name`, registers, and stores the handle in `*out`.
///
/// # Safety
///
/// `path` and `name` are NUL-terminated strings; `opts` is NULL or a `vlc_options_t` readable
/// for its `struct_size`; `out` is writable.
#[doc(alias = "vl_socket_client_connect2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_connect(
    path: *const c_char,
    name: *const c_char,
    opts: *const VlcOptions,
    out: *mut *mut VlcConn,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return set_error(VLC_E_INVAL, "out is null");
        }
        // SAFETY: invariant 3, stated in this function's contract.
        let path = match unsafe { string(path, "path") } {
            Ok(p) => p,
            Err(rc) => return rc,
        };
        // SAFETY: as above.
        let name = match unsafe { string(name, "name") } {
            Ok(n) => n,
            Err(rc) => return rc,
        };
        // SAFETY: as above.
        let o = unsafe { options(name, opts) };
        match Handle::connect(path, o) {
            Ok(h) => {
                let p = Box::into_raw(Box::new(h));
                // SAFETY: `out` is non-NULL and writable by the contract.
                unsafe { out.write(p) };
                VLC_OK
            }
            Err(e) => set_error(connect_code(&e), &e),
        }
    })
}

/// Connects to the server's named shared-memory API segment (`/dev/shm/vpe-api`, or
/// `/dev/shm/<prefix>-vpe-api`), registers, and stores the handle in `*out`.
///
/// # Safety
///
/// As [`vlc_connect`], with `prefix` (NULL for none) in place of `path`.
#[doc(alias = "vl_client_connect_to_vlib")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_attach_shm(
    prefix: *const c_char,
    name: *const c_char,
    opts: *const VlcOptions,
    out: *mut *mut VlcConn,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return set_error(VLC_E_INVAL, "out is null");
        }
        let prefix = if prefix.is_null() {
            None
        } else {
            // SAFETY: invariant 3, stated in this function's contract.
            match unsafe { string(prefix, "prefix") } {
                Ok(s) => Some(s),
                Err(rc) => return rc,
            }
        };
        // SAFETY: as above.
        let name = match unsafe { string(name, "name") } {
            Ok(n) => n,
            Err(rc) => return rc,
        };
        // SAFETY: as above.
        let o = unsafe { options(name, opts) };
        let conn = match Connection::attach_shm(prefix, &o.connect) {
            Ok(conn) => conn,
            Err(e) => return set_error(attach_code(&e), e),
        };
        match Handle::start(conn, o) {
            Ok(h) => {
                let p = Box::into_raw(Box::new(h));
                // SAFETY: `out` is non-NULL and writable by the contract.
                unsafe { out.write(p) };
                VLC_OK
            }
            Err(e) => set_error(connect_code(&e), &e),
        }
    })
}

/// Stops the library's thread, says goodbye (`memclnt_delete` on shared memory, then
/// `sockclnt_delete` on a socket), closes and frees the handle. NULL is a no-op.
///
/// # Safety
///
/// `c` is NULL or a handle from `vlc_connect` that no other thread is using; it is invalid
/// afterwards.
#[doc(alias = "vl_socket_client_disconnect2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_disconnect(c: *mut VlcConn) -> c_int {
    guard(|| {
        if c.is_null() {
            return VLC_OK;
        }
        // SAFETY: invariant 1, stated in this function's contract.
        match unsafe { handle(c) } {
            Ok(h) if h.on_background_thread() => {
                return set_error(
                    VLC_E_INVAL,
                    "vlc_disconnect cannot be called from the receive callback",
                );
            }
            Ok(_) => {}
            Err(rc) => return rc,
        }
        // SAFETY: invariant 1: `c` came from `Box::into_raw` in `vlc_connect` and the caller
        // hands it back exactly once, with no concurrent use.
        let h = unsafe { Box::from_raw(c) };
        h.close();
        VLC_OK
    })
}

/// Moves the connection to a private shared-memory segment of `segment_size` bytes (0: the
/// server's default). On failure the connection stays on the socket.
///
/// # Safety
///
/// `c` is a live handle.
#[doc(alias = "vl_socket_client_init_shm2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_pivot_to_shm(c: *mut VlcConn, segment_size: u64) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        match h.pivot_to_shm(segment_size) {
            Ok(()) => VLC_OK,
            Err(e) => set_error(pivot_code(&e), e),
        }
    })
}

/// The transport in use: `VLC_TRANSPORT_SOCKET` or `VLC_TRANSPORT_SHM` (or a negative error).
///
/// # Safety
///
/// `c` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_transport(c: *const VlcConn) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        match unsafe { handle(c) } {
            Ok(h) => match h.conn().transport() {
                TransportKind::Socket => VLC_TRANSPORT_SOCKET,
                TransportKind::SharedMemory => VLC_TRANSPORT_SHM,
            },
            Err(rc) => rc,
        }
    })
}

/// The client index the server assigned (requests carry it); 0 for a NULL handle.
///
/// # Safety
///
/// `c` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_client_index(c: *const VlcConn) -> u32 {
    let mut index = 0;
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        match unsafe { handle(c) } {
            Ok(h) => {
                index = h.conn().client_index();
                VLC_OK
            }
            Err(rc) => rc,
        }
    });
    index
}

/// Keepalive pings the library has answered on this connection.
///
/// # Safety
///
/// `c` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_keepalives_answered(c: *const VlcConn) -> u64 {
    let mut n = 0;
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        match unsafe { handle(c) } {
            Ok(h) => {
                n = h.conn().pings_answered();
                VLC_OK
            }
            Err(rc) => rc,
        }
    });
    n
}

/// The ID of message `name_crc` (`"control_ping_51077d14"`), or `VLC_E_UNKNOWN_MSG`.
///
/// # Safety
///
/// `c` is a live handle; `name_crc` a NUL-terminated string.
#[doc(alias = "vl_msg_api_get_msg_index")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_id(c: *const VlcConn, name_crc: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        // SAFETY: invariant 3, stated in this function's contract.
        let n = match unsafe { string(name_crc, "name_crc") } {
            Ok(n) => n,
            Err(rc) => return rc,
        };
        match h.conn().table().id(n) {
            Some(id) => c_int::from(id),
            None => set_error(VLC_E_UNKNOWN_MSG, format!("the server has no message {n}")),
        }
    })
}

/// The ID of message `name` with CRC `crc`, or `VLC_E_UNKNOWN_MSG`.
///
/// # Safety
///
/// `c` is a live handle; `name` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_id_crc(c: *const VlcConn, name: *const c_char, crc: u32) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        // SAFETY: invariant 3, stated in this function's contract.
        let n = match unsafe { string(name, "name") } {
            Ok(n) => n,
            Err(rc) => return rc,
        };
        match h.conn().table().id_by_name_crc(n, crc) {
            Some(id) => c_int::from(id),
            None => set_error(
                VLC_E_UNKNOWN_MSG,
                format!("the server has no message {n}_{crc:08x}"),
            ),
        }
    })
}

/// A zeroed buffer for a `len`-byte message, owned by the caller until `vlc_msg_write` or
/// `vlc_msg_free`. NULL on failure.
///
/// # Safety
///
/// `c` is a live handle.
#[doc(alias = "vl_socket_client_msg_alloc2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_alloc(c: *mut VlcConn, len: usize) -> *mut c_void {
    let mut out = std::ptr::null_mut();
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        if len < 2 || len > h.conn().max_message_len() as usize {
            return set_error(
                VLC_E_INVAL,
                format!("cannot allocate a message of {len} bytes"),
            );
        }
        // The message is copied into the segment's ring when sent: vlibmemory's sender takes
        // bytes, not a slot the caller fills in place.
        out = buffer_new(len);
        VLC_OK
    });
    out
}

/// The length of a message buffer (as allocated, or as received); 0 for NULL or a pointer that
/// is not a live buffer.
///
/// # Safety
///
/// `msg` is NULL or a live buffer from `vlc_msg_alloc` / `vlc_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_len(msg: *const c_void) -> usize {
    let mut len = 0;
    guard(|| {
        if msg.is_null() {
            return VLC_E_INVAL;
        }
        // SAFETY: invariant 2: a live buffer starts `PREFIX_WORDS` words before `msg`.
        let base = unsafe { msg.cast::<u64>().sub(PREFIX_WORDS) };
        // SAFETY: `base` is the aligned start of the live allocation.
        let word0 = unsafe { base.read() };
        if word0 >> 32 == MAGIC {
            // SAFETY: word 1 is within the prefix of the same allocation.
            len = unsafe { base.wrapping_add(1).read() } as usize;
        }
        VLC_OK
    });
    len
}

/// Frees a message buffer. NULL is a no-op.
///
/// # Safety
///
/// `msg` is NULL or a live buffer from `vlc_msg_alloc` / `vlc_read`; it is invalid afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_free(msg: *mut c_void) {
    guard(|| {
        if msg.is_null() {
            return VLC_OK;
        }
        // SAFETY: invariant 2, stated in this function's contract.
        match unsafe { buffer_take(msg) } {
            Some(_) => VLC_OK,
            None => set_error(VLC_E_INVAL, "not a message buffer (or freed twice)"),
        }
    });
}

/// Sends a buffer from `vlc_msg_alloc` and frees it, whatever the outcome. With
/// `VLC_SEND_MORE` it is only buffered, to go out with the next send without the flag (or
/// `vlc_flush`).
///
/// # Safety
///
/// `c` is a live handle; `msg` a live buffer from `vlc_msg_alloc` or `vlc_read`, invalid
/// afterwards.
#[doc(alias = "vl_socket_client_write2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_msg_write(c: *mut VlcConn, msg: *mut c_void, flags: c_int) -> c_int {
    guard(|| {
        if msg.is_null() {
            return set_error(VLC_E_INVAL, "msg is null");
        }
        // SAFETY: invariant 2, stated in this function's contract.
        let Some((mut words, len)) = (unsafe { buffer_take(msg) }) else {
            return set_error(VLC_E_INVAL, "not a message buffer (or freed twice)");
        };
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        let bytes = buffer_bytes(&mut words, len);
        let r = if flags & VLC_SEND_MORE != 0 {
            h.conn().queue(&bytes[PREFIX..])
        } else {
            h.conn().send_framed(bytes)
        };
        match r {
            Ok(()) => VLC_OK,
            Err(e) => set_error(send_code(&e), e),
        }
    })
}

/// Sends a copy of `len` bytes at `data` (a whole message, starting with its ID). With
/// `VLC_SEND_MORE` it is only buffered.
///
/// # Safety
///
/// `c` is a live handle; `data` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_send(
    c: *mut VlcConn,
    data: *const c_void,
    len: usize,
    flags: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        if data.is_null() {
            return set_error(VLC_E_INVAL, "data is null");
        }
        // SAFETY: non-NULL and readable for `len` bytes by the contract; u8 needs no alignment.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        let r = if flags & VLC_SEND_MORE != 0 {
            h.conn().queue(bytes)
        } else {
            h.conn().send(bytes)
        };
        match r {
            Ok(()) => VLC_OK,
            Err(e) => set_error(send_code(&e), e),
        }
    })
}

/// Writes every buffered message.
///
/// # Safety
///
/// `c` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_flush(c: *mut VlcConn) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        match h.conn().flush() {
            Ok(()) => VLC_OK,
            Err(e) => set_error(send_code(&e), e),
        }
    })
}

/// Receives the next message (never a keepalive ping). On `VLC_OK`, `*msg` is a buffer the
/// caller frees with `vlc_msg_free` and `*len` its length. `timeout_ms`: negative waits
/// without limit, 0 does not wait. `VLC_E_TIMEOUT` when nothing came.
///
/// # Safety
///
/// `c` is a live handle; `msg` and `len` are writable.
#[doc(alias = "vl_socket_client_read2")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_read(
    c: *mut VlcConn,
    msg: *mut *mut c_void,
    len: *mut usize,
    timeout_ms: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        if msg.is_null() || len.is_null() {
            return set_error(VLC_E_INVAL, "msg or len is null");
        }
        let wait = match timeout_ms {
            t if t < 0 => Wait::Forever,
            0 => Wait::No,
            t => Wait::For(Duration::from_millis(t as u64)),
        };
        match h.read_with(wait, |m| (buffer_from(m), m.len())) {
            Ok(Some((p, n))) => {
                // SAFETY: both out-pointers are non-NULL and writable by the contract.
                unsafe { msg.write(p) };
                // SAFETY: as above.
                unsafe { len.write(n) };
                VLC_OK
            }
            Ok(None) => set_error(VLC_E_TIMEOUT, "no message within the timeout"),
            Err(ReadError::CallbackMode) => set_error(VLC_E_CALLBACK_MODE, ReadError::CallbackMode),
            Err(ReadError::Recv(e)) => set_error(recv_code(&e), e),
        }
    })
}

/// The callback and its user pointer, movable to the library's thread.
struct CCallback {
    f: VlcRxFn,
    user: *mut c_void,
}

// SAFETY: invariant 4: the caller of `vlc_set_rx_callback` agreed that `f` and `user` may be
// used from the library's thread, and `CCallback` does nothing else with the pointer.
unsafe impl Send for CCallback {}
// SAFETY: as for `Send`; the library calls the callback from one thread at a time.
unsafe impl Sync for CCallback {}

impl CCallback {
    fn call(&self, m: &[u8]) {
        // SAFETY: invariant 4: `f` is a valid function for these arguments until replaced, and
        // does not unwind; `m` is readable for `m.len()` bytes during the call.
        unsafe { (self.f)(self.user, m.as_ptr().cast(), m.len()) }
    }
}

/// Installs a receive callback, called on the library's thread with each message (the
/// message is valid during the call only); `vlc_read` then returns `VLC_E_CALLBACK_MODE`.
/// A NULL `cb` goes back to `vlc_read`.
///
/// # Safety
///
/// `c` is a live handle; `cb` (if not NULL) may be called with `user` from another thread until
/// it is replaced or the handle is disconnected, and must not unwind.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlc_set_rx_callback(
    c: *mut VlcConn,
    cb: Option<VlcRxFn>,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: invariant 1, stated in this function's contract.
        let h = match unsafe { handle(c) } {
            Ok(h) => h,
            Err(rc) => return rc,
        };
        h.set_callback(cb.map(|f| {
            let cc = CCallback { f, user };
            Box::new(move |m: &[u8]| cc.call(m)) as crate::handle::RxCallback
        }));
        VLC_OK
    })
}

/// The message of this thread's last failure (empty if none). Valid until the next failing
/// call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn vlc_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"internal error".as_ptr())
}

/// A static description of an error code.
#[unsafe(no_mangle)]
pub extern "C" fn vlc_strerror(code: c_int) -> *const c_char {
    catch_unwind(|| strerror(code).as_ptr()).unwrap_or(c"internal error".as_ptr())
}

fn strerror(code: c_int) -> &'static CStr {
    match code {
        VLC_OK => c"success",
        VLC_E_INVAL => c"invalid argument",
        VLC_E_CONNECT => c"cannot connect",
        VLC_E_TIMEOUT => c"timed out",
        VLC_E_DISCONNECTED => c"disconnected",
        VLC_E_UNKNOWN_MSG => c"unknown message",
        VLC_E_PROTOCOL => c"protocol error",
        VLC_E_OS => c"system call failed",
        VLC_E_NOT_AVAILABLE => c"not available",
        VLC_E_CALLBACK_MODE => c"callback mode",
        VLC_E_PANIC => c"internal error",
        _ => c"unknown error code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_round_trip_and_foreign_pointers_are_refused() {
        let p = buffer_from(&[1, 2, 3, 4, 5]);
        // SAFETY: `p` is a live buffer just made.
        assert_eq!(unsafe { vlc_msg_len(p) }, 5);
        // SAFETY: `p` is live and owned here.
        let (mut words, len) = unsafe { buffer_take(p) }.unwrap();
        assert_eq!(len, 5);
        assert_eq!(&buffer_bytes(&mut words, len)[PREFIX..], &[1, 2, 3, 4, 5]);
        drop(words);
        // A region without the magic is not taken.
        let mut foreign = vec![0u64; 4];
        let fp = foreign
            .as_mut_ptr()
            .wrapping_add(PREFIX_WORDS)
            .cast::<c_void>();
        // SAFETY: `fp` is PREFIX_WORDS words into a live, aligned allocation of 4 words.
        assert!(unsafe { buffer_take(fp) }.is_none());
        // SAFETY: as above; the length of a foreign region reads as 0.
        assert_eq!(unsafe { vlc_msg_len(fp) }, 0);
        let q = buffer_new(0);
        // SAFETY: `q` is live and owned here.
        unsafe { vlc_msg_free(q) };
    }

    #[test]
    fn null_arguments_are_errors_not_crashes() {
        let mut out = std::ptr::null_mut();
        let (path, name) = (std::ptr::null(), c"x".as_ptr());
        // SAFETY: NULL strings are allowed (and rejected); `out` is writable.
        let rc = unsafe { vlc_connect(path, name, std::ptr::null(), &mut out) };
        assert_eq!(rc, VLC_E_INVAL);
        // SAFETY: the returned pointer is a NUL-terminated string owned by this thread.
        let msg = unsafe { CStr::from_ptr(vlc_last_error()) };
        assert_eq!(msg.to_str().unwrap(), "path is null");
        // SAFETY: NULL handles are rejected before use.
        assert_eq!(unsafe { vlc_flush(std::ptr::null_mut()) }, VLC_E_INVAL);
        // SAFETY: as above.
        let p = unsafe { vlc_msg_alloc(std::ptr::null_mut(), 10) };
        assert_eq!(p, std::ptr::null_mut());
        // SAFETY: NULL is a no-op.
        assert_eq!(unsafe { vlc_disconnect(std::ptr::null_mut()) }, VLC_OK);
    }

    #[test]
    fn panics_become_error_codes() {
        let rc = guard(|| panic!("boom"));
        assert_eq!(rc, VLC_E_PANIC);
        // SAFETY: the returned pointer is a NUL-terminated string owned by this thread.
        let msg = unsafe { CStr::from_ptr(vlc_last_error()) };
        assert_eq!(msg.to_str().unwrap(), "internal error: boom");
    }

    #[test]
    fn short_options_structs_keep_defaults() {
        let o = VlcOptions {
            struct_size: 8,
            timeout_ms: 1234,
            max_msg_len: 99,
            ..Default::default()
        };
        // SAFETY: `o` is readable for its full size, more than `struct_size`.
        let h = unsafe { options("x", &o) };
        assert_eq!(h.connect.timeout, Duration::from_millis(1234));
        assert_eq!(
            h.connect.max_message_len,
            64 << 20,
            "beyond struct_size: default"
        );
    }
}
