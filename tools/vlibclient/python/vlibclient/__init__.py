"""Python binding of libvlibclient.so, the C client library of the API server.

``Connection`` is one registered connection (the socket, a private shared-memory segment
after a pivot, or the server's named segment) that sends and receives raw API messages. Keepalive pings from the server are
answered inside the library, by its own thread, and never reach Python: a program may stay
silent (sleeping, or busy holding the GIL) for as long as it likes without being reaped.

``Api`` adds message encoding with vpp_papi's serializer: it loads the server's API
definitions (``get_api_json``) through ``vpp_papi.VPPApiJSONFiles``, and packs and unpacks
messages with the resulting ``vpp_serializer`` message types.

    from vlibclient import Connection, Api
    with Connection("/run/vpp/api.sock", "example", shm=True) as conn:
        api = Api(conn)
        print(api.call("control_ping").vpe_pid)
        print(api.dump("api_client_dump"))

The library is found through ``$VLIBCLIENT_LIB`` (a path to libvlibclient.so), else by the
dynamic loader's search (``ctypes.util.find_library("vlibclient")``).
"""

import ctypes
import ctypes.util
import itertools
import os
import struct
import threading

__all__ = [
    "Api",
    "Connection",
    "Disconnected",
    "NotAvailable",
    "Timeout",
    "UnknownMessage",
    "VlcError",
    "load_library",
]

VLC_OK = 0
VLC_E_INVAL = -1
VLC_E_CONNECT = -2
VLC_E_TIMEOUT = -3
VLC_E_DISCONNECTED = -4
VLC_E_UNKNOWN_MSG = -5
VLC_E_PROTOCOL = -6
VLC_E_OS = -7
VLC_E_NOT_AVAILABLE = -8
VLC_E_CALLBACK_MODE = -9
VLC_E_PANIC = -10

VLC_SEND_MORE = 1
VLC_TRANSPORT_SOCKET = 0
VLC_TRANSPORT_SHM = 1


class VlcError(Exception):
    """A libvlibclient call failed: ``code`` is the VLC_E_* value, ``message`` the reason."""

    def __init__(self, code, message):
        super().__init__("%s (%d)" % (message, code))
        self.code = code
        self.message = message


class Timeout(VlcError):
    """Nothing arrived within the timeout."""


class Disconnected(VlcError):
    """The server closed the connection."""


class UnknownMessage(VlcError):
    """The server's message table has no such message."""


class NotAvailable(VlcError):
    """The server does not offer it (shared memory: its table lacks the messages)."""


_ERRORS = {
    VLC_E_TIMEOUT: Timeout,
    VLC_E_DISCONNECTED: Disconnected,
    VLC_E_UNKNOWN_MSG: UnknownMessage,
    VLC_E_NOT_AVAILABLE: NotAvailable,
}


class _Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32),
        ("max_msg_len", ctypes.c_uint32),
        ("idle_poll_ms", ctypes.c_uint32),
        ("rx_queue_limit", ctypes.c_uint64),
    ]


_RX_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_lib = None
_lib_lock = threading.Lock()


def load_library(path=None):
    """Loads libvlibclient.so (once) and declares its functions; returns the ctypes CDLL."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        path = path or os.environ.get("VLIBCLIENT_LIB") or ctypes.util.find_library("vlibclient")
        if not path:
            raise OSError("libvlibclient.so not found: set VLIBCLIENT_LIB")
        lib = ctypes.CDLL(path)
        c_int, c_char_p, c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
        conn_p = ctypes.c_void_p
        sigs = {
            "vlc_connect": (c_int, [c_char_p, c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(conn_p)]),
            "vlc_attach_shm": (c_int, [c_char_p, c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(conn_p)]),
            "vlc_pivot_to_shm": (c_int, [conn_p, ctypes.c_uint64]),
            "vlc_disconnect": (c_int, [conn_p]),
            "vlc_transport": (c_int, [conn_p]),
            "vlc_client_index": (ctypes.c_uint32, [conn_p]),
            "vlc_keepalives_answered": (ctypes.c_uint64, [conn_p]),
            "vlc_msg_id": (c_int, [conn_p, c_char_p]),
            "vlc_msg_id_crc": (c_int, [conn_p, c_char_p, ctypes.c_uint32]),
            "vlc_msg_free": (None, [c_void_p]),
            "vlc_send": (c_int, [conn_p, c_char_p, ctypes.c_size_t, c_int]),
            "vlc_flush": (c_int, [conn_p]),
            "vlc_read": (c_int, [conn_p, ctypes.POINTER(c_void_p), ctypes.POINTER(ctypes.c_size_t), c_int]),
            "vlc_set_rx_callback": (c_int, [conn_p, _RX_FN, c_void_p]),
            "vlc_last_error": (c_char_p, []),
            "vlc_strerror": (c_char_p, [c_int]),
        }
        for name, (res, args) in sigs.items():
            f = getattr(lib, name)
            f.restype = res
            f.argtypes = args
        _lib = lib
        return lib


def _check(lib, rc):
    """Raises the matching VlcError for a negative return code; returns rc otherwise."""
    if rc >= 0:
        return rc
    message = (lib.vlc_last_error() or b"").decode("utf-8", "replace")
    raise _ERRORS.get(rc, VlcError)(rc, message or lib.vlc_strerror(rc).decode())


class Connection:
    """One connection to the API server through libvlibclient.

    socket_path, name: where the server listens, and the name it shows for this client.
    shm: pivot to a private shared-memory segment of shm_size bytes (0: the server's default)
        after connecting; the client index changes (see client_index).
    timeout: registration timeout in seconds.
    idle_poll: how often the library's thread looks for pings while Python is silent.
    """

    def __init__(self, socket_path, name, shm=False, shm_size=64 << 20, timeout=5.0,
                 idle_poll=0.1, rx_queue_limit=0, library=None):
        self._lib = load_library(library)
        self._handle = ctypes.c_void_p()
        self._callback = None
        opts = self._options(timeout, idle_poll, rx_queue_limit)
        rc = self._lib.vlc_connect(os.fsencode(socket_path), name.encode(), ctypes.byref(opts),
                                   ctypes.byref(self._handle))
        _check(self._lib, rc)
        if shm:
            try:
                self.pivot_to_shm(shm_size)
            except VlcError:
                self.disconnect()
                raise

    @staticmethod
    def _options(timeout, idle_poll, rx_queue_limit):
        return _Options(
            struct_size=ctypes.sizeof(_Options),
            timeout_ms=int(timeout * 1000),
            max_msg_len=0,
            idle_poll_ms=max(1, int(idle_poll * 1000)),
            rx_queue_limit=rx_queue_limit,
        )

    @classmethod
    def attach_shm(cls, name, prefix=None, timeout=5.0, idle_poll=0.1, library=None):
        """Connects to the server's named segment (/dev/shm/vpe-api, or <prefix>-vpe-api, the
        server's --shm-prefix), without a socket.

        Raises VlcError (code VLC_E_CONNECT) when there is no such segment, no free slot, or
        its server is gone.
        """
        self = cls.__new__(cls)
        self._lib = load_library(library)
        self._handle = ctypes.c_void_p()
        self._callback = None
        opts = cls._options(timeout, idle_poll, 0)
        _check(self._lib, self._lib.vlc_attach_shm(prefix.encode() if prefix else None, name.encode(),
                                                   ctypes.byref(opts), ctypes.byref(self._handle)))
        return self

    def _h(self):
        if not self._handle:
            raise Disconnected(VLC_E_DISCONNECTED, "connection closed")
        return self._handle

    def pivot_to_shm(self, size=64 << 20):
        """Moves the connection to a private shared-memory segment of size bytes.

        The client index changes; the connection stays on the socket if this raises.
        """
        _check(self._lib, self._lib.vlc_pivot_to_shm(self._h(), size))

    @property
    def transport(self):
        """'socket' or 'shm'."""
        t = _check(self._lib, self._lib.vlc_transport(self._h()))
        return "shm" if t == VLC_TRANSPORT_SHM else "socket"

    @property
    def client_index(self):
        """The index the server gave this client; requests carry it."""
        return self._lib.vlc_client_index(self._h())

    @property
    def keepalives_answered(self):
        """Keepalive pings the library answered for this connection."""
        return self._lib.vlc_keepalives_answered(self._h())

    def msg_id(self, name_crc):
        """The ID of "name_crc" (control_ping_51077d14); raises UnknownMessage."""
        return _check(self._lib, self._lib.vlc_msg_id(self._h(), name_crc.encode()))

    def msg_id_crc(self, name, crc):
        """The ID of message name with CRC crc (an int, or vpp_papi's "0x..." string)."""
        if isinstance(crc, str):
            crc = int(crc, 16)
        return _check(self._lib, self._lib.vlc_msg_id_crc(self._h(), name.encode(), crc))

    def send(self, data, more=False):
        """Sends one whole message (bytes, ID first). more=True buffers it until flush()."""
        data = bytes(data)
        flags = VLC_SEND_MORE if more else 0
        _check(self._lib, self._lib.vlc_send(self._h(), data, len(data), flags))

    def flush(self):
        """Writes messages buffered with more=True."""
        _check(self._lib, self._lib.vlc_flush(self._h()))

    def recv(self, timeout=None):
        """The next message as bytes (never a keepalive ping), or None after timeout seconds.

        timeout=None waits without limit. The wait happens in C, without the GIL.
        """
        ms = -1 if timeout is None else int(timeout * 1000)
        msg = ctypes.c_void_p()
        n = ctypes.c_size_t()
        rc = self._lib.vlc_read(self._h(), ctypes.byref(msg), ctypes.byref(n), ms)
        if rc == VLC_E_TIMEOUT:
            return None
        _check(self._lib, rc)
        try:
            return ctypes.string_at(msg.value, n.value)
        finally:
            self._lib.vlc_msg_free(msg)

    def set_callback(self, fn):
        """Calls fn(bytes) from the library's thread for each message (None: back to recv)."""
        if fn is None:
            _check(self._lib, self._lib.vlc_set_rx_callback(self._h(), _RX_FN(), None))
            self._callback = None
            return

        def trampoline(_user, msg, n):
            try:
                fn(ctypes.string_at(msg, n))
            except Exception:  # an exception must not unwind into C
                import traceback
                traceback.print_exc()

        cb = _RX_FN(trampoline)
        _check(self._lib, self._lib.vlc_set_rx_callback(self._h(), cb, None))
        # Keep the ctypes thunk alive as long as the library may call it.
        self._callback = cb

    def disconnect(self):
        """Says goodbye to the server and frees the connection (idempotent)."""
        if self._handle:
            h, self._handle = self._handle, ctypes.c_void_p()
            self._lib.vlc_disconnect(h)
        self._callback = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()

    def __del__(self):
        if getattr(self, "_handle", None):
            try:
                self.disconnect()
            except Exception:  # interpreter shutdown may have torn ctypes down already
                pass


class Api:
    """Message encoding for a Connection through vpp_papi's serializer.

    The definitions come from the server (get_api_json, sent here by hand since nothing can be
    encoded before they are loaded), or from json_defs (a JSON array of API files as text).
    """

    def __init__(self, conn, json_defs=None, timeout=5.0):
        from vpp_papi import VPPApiJSONFiles

        self.conn = conn
        self.timeout = timeout
        self._contexts = itertools.count(1)
        self.events = []
        if json_defs is None:
            json_defs = self._get_api_json()
        self.messages, self.services = VPPApiJSONFiles.process_json_array_str(json_defs)
        self.ids = {}
        self.names = {}
        for name, msg in self.messages.items():
            try:
                i = conn.msg_id_crc(name, msg.crc)
            except UnknownMessage:
                continue
            self.ids[name] = i
            self.names[i] = name

    def _get_api_json(self):
        # get_api_json: u16 id, u32 client_index, u32 context.
        # get_api_json_reply: u16 id, u32 context, i32 retval, string json[] (u32 length + bytes).
        req_id = self.conn.msg_id("get_api_json_51077d14")
        rep_id = self.conn.msg_id("get_api_json_reply_ea715b59")
        context = next(self._contexts)
        self.conn.send(struct.pack(">HII", req_id, self.conn.client_index, context))
        while True:
            m = self.conn.recv(self.timeout)
            if m is None:
                raise Timeout(VLC_E_TIMEOUT, "no get_api_json_reply")
            mid, ctx, retval, n = struct.unpack_from(">HIiI", m)
            if mid == rep_id and ctx == context:
                if retval != 0:
                    raise VlcError(retval, "get_api_json failed")
                return m[14:14 + n].decode()
            self.events.append(m)

    def encode(self, name, /, context=0, **fields):
        """Packs message name (with this client's index and context) into bytes.

        name is positional-only, so a message may have a field called name.
        """
        msg = self.messages[name]
        fields["_vl_msg_id"] = self.ids[name]
        if "client_index" in msg.field_by_name:
            fields.setdefault("client_index", self.conn.client_index)
        if "context" in msg.field_by_name:
            fields["context"] = context
        return msg.pack(fields)

    def decode(self, data):
        """(name, namedtuple) of a received message."""
        (mid,) = struct.unpack_from(">H", data)
        name = self.names.get(mid)
        if name is None:
            raise UnknownMessage(VLC_E_UNKNOWN_MSG, "message id %d" % mid)
        value, _size = self.messages[name].unpack(data)
        return name, value

    def _reply_name(self, name):
        svc = self.services.get(name, {})
        return svc.get("reply", name + "_reply")

    def _wait(self, context, want):
        while True:
            m = self.conn.recv(self.timeout)
            if m is None:
                raise Timeout(VLC_E_TIMEOUT, "no reply within %ss" % self.timeout)
            name, value = self.decode(m)
            if getattr(value, "context", None) == context and name in want:
                return name, value
            self.events.append((name, value))

    def call(self, name, /, **fields):
        """Sends request name and returns its decoded reply."""
        context = next(self._contexts)
        self.conn.send(self.encode(name, context, **fields))
        return self._wait(context, {self._reply_name(name)})[1]

    def dump(self, name, /, **fields):
        """Sends dump name plus a control_ping; returns the list of details."""
        context = next(self._contexts)
        self.conn.send(self.encode(name, context, **fields), more=True)
        self.conn.send(self.encode("control_ping", context))
        details = self._reply_name(name)
        out = []
        while True:
            got, value = self._wait(context, {details, "control_ping_reply"})
            if got == "control_ping_reply":
                return out
            out.append(value)
