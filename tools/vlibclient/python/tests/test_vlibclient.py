"""The Python package against the real server and a pinging fake server."""
import os
import struct
import threading
import time

import pytest

import vlibclient
from vlibclient import Api, Connection, UnknownMessage, VlcError

PING = "control_ping_51077d14"
PING_REPLY = "control_ping_reply_f6b0b8ca"


def ping_bytes(conn, context):
    return struct.pack(">HII", conn.msg_id(PING), conn.client_index, context)


def test_raw_messages_over_the_socket(server):
    path, pid = server
    with Connection(path, "py-raw") as conn:
        assert conn.transport == "socket"
        assert conn.client_index & 0x80000000
        assert conn.msg_id_crc("control_ping", 0x51077D14) == conn.msg_id(PING)
        conn.send(ping_bytes(conn, 7))
        m = conn.recv(timeout=5)
        mid, ctx, retval, index, vpe_pid = struct.unpack(">HIiII", m)
        assert (mid, ctx, retval, index, vpe_pid) == (conn.msg_id(PING_REPLY), 7, 0, conn.client_index, pid)
        assert conn.recv(timeout=0) is None
        # Pipelined: buffered, then one flush.
        for i in range(100):
            conn.send(ping_bytes(conn, 1000 + i), more=True)
        conn.flush()
        contexts = [struct.unpack_from(">HI", conn.recv(timeout=5))[1] for _ in range(100)]
        assert contexts == list(range(1000, 1100))


def test_serializer_from_vpp_papi(server):
    path, pid = server
    with Connection(path, "py-papi") as conn:
        api = Api(conn)
        r = api.call("control_ping")
        assert r.retval == 0 and r.vpe_pid == pid and r.client_index == conn.client_index
        v = api.call("show_version")
        assert v.program == "api-server"
        c = api.call("cli_inband", cmd="show api clients")
        assert "py-papi" in c.reply
        r = api.call("sw_thing_add_del", is_add=True, name="from-vlibclient", count=5, enable=True)
        assert r.retval == 0
        things = api.dump("sw_thing_dump")
        assert [(t.name, t.count) for t in things] == [("from-vlibclient", 5)]
        clients = api.dump("api_client_dump")
        assert any(c.name == "py-papi" and c.pid == os.getpid() for c in clients)
        r = api.call("sw_thing_add_del", is_add=False, name="from-vlibclient")
        assert r.retval == 0
        # Encoding and decoding stand alone too.
        raw = api.encode("control_ping", context=99)
        assert raw == ping_bytes(conn, 99)
        conn.send(raw)
        name, value = api.decode(conn.recv(timeout=5))
        assert name == "control_ping_reply" and value.context == 99


def test_callback_mode(server):
    path, _ = server
    with Connection(path, "py-callback") as conn:
        got = []
        done = threading.Event()

        def on_message(m):
            got.append(struct.unpack_from(">HI", m)[1])
            if len(got) == 50:
                done.set()

        conn.set_callback(on_message)
        with pytest.raises(VlcError) as e:
            conn.recv(timeout=0)
        assert e.value.code == vlibclient.VLC_E_CALLBACK_MODE
        for i in range(50):
            conn.send(ping_bytes(conn, i + 1))
        assert done.wait(10)
        assert got == list(range(1, 51))
        conn.set_callback(None)
        conn.send(ping_bytes(conn, 77))
        assert struct.unpack_from(">HI", conn.recv(timeout=5))[1] == 77


def test_several_connections_in_threads(server):
    path, _ = server
    errors = []

    def worker(i):
        try:
            with Connection(path, "py-thread-%d" % i) as conn:
                for n in range(200):
                    conn.send(ping_bytes(conn, n + 1))
                    assert struct.unpack_from(">HI", conn.recv(timeout=5))[1] == n + 1
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_errors_are_exceptions(server):
    path, _ = server
    with pytest.raises(VlcError) as e:
        Connection("/nonexistent/api.sock", "py")
    assert e.value.code == vlibclient.VLC_E_CONNECT
    assert "/nonexistent/api.sock" in e.value.message
    with Connection(path, "py-errors") as conn:
        with pytest.raises(UnknownMessage):
            conn.msg_id("no_such_message_00000000")
        with pytest.raises(VlcError) as e:
            conn.send(b"\x00")
        assert e.value.code == vlibclient.VLC_E_INVAL
    with pytest.raises(vlibclient.Disconnected):
        conn.recv(timeout=0)


def exercise(conn, pid, tag):
    """Raw requests, pipelining, vpp_papi-encoded requests, a dump and events over conn."""
    conn.send(ping_bytes(conn, 7))
    mid, ctx, retval, index, vpe_pid = struct.unpack(">HIiII", conn.recv(timeout=5))
    assert (mid, ctx, retval, index, vpe_pid) == (conn.msg_id(PING_REPLY), 7, 0, conn.client_index, pid)
    for i in range(200):
        conn.send(ping_bytes(conn, 1000 + i), more=True)
    conn.flush()
    assert [struct.unpack_from(">HI", conn.recv(timeout=5))[1] for _ in range(200)] == list(range(1000, 1200))
    api = Api(conn)
    r = api.call("control_ping")
    assert r.vpe_pid == pid and r.client_index == conn.client_index
    name = "py-thing-" + tag
    assert api.call("want_sw_thing_events", enable=True, pid=os.getpid()).retval == 0
    assert api.call("sw_thing_add_del", is_add=True, name=name, count=9, enable=True).retval == 0
    deadline = time.monotonic() + 5
    while not any(isinstance(e, tuple) and e[0] == "sw_thing_event" and e[1].name == name for e in api.events):
        m = conn.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert m is not None, "no sw_thing_event for " + name
        api.events.append(api.decode(m))
    things = api.dump("sw_thing_dump")
    assert [(t.name, t.count) for t in things if t.name == name] == [(name, 9)]
    assert api.call("want_sw_thing_events", enable=False, pid=os.getpid()).retval == 0
    assert api.call("sw_thing_add_del", is_add=False, name=name).retval == 0
    assert conn.recv(timeout=0) is None


def test_shared_memory_after_a_pivot(shm_server):
    path, pid, _ = shm_server
    with Connection(path, "py-socket") as plain:
        socket_index = plain.client_index
    with Connection(path, "py-pivot", shm=True) as conn:
        assert conn.transport == "shm"
        assert not conn.client_index & 0x80000000
        assert conn.client_index != socket_index
        exercise(conn, pid, "pivot")
        clients = Api(conn).dump("api_client_dump")
        assert any(c.name == "py-pivot" and c.index == conn.client_index for c in clients)
        # Once is enough.
        with pytest.raises(VlcError) as e:
            conn.pivot_to_shm()
        assert e.value.code == vlibclient.VLC_E_INVAL


def test_shared_memory_attached_by_name(shm_server):
    path, pid, prefix = shm_server
    with Connection.attach_shm("py-named", prefix=prefix) as conn:
        assert conn.transport == "shm"
        assert not conn.client_index & 0x80000000
        exercise(conn, pid, "named")
        # A receive callback works there too.
        got = []
        done = threading.Event()

        def on_message(m):
            got.append(struct.unpack_from(">HI", m)[1])
            if len(got) == 20:
                done.set()

        conn.set_callback(on_message)
        for i in range(20):
            conn.send(ping_bytes(conn, i + 1))
        assert done.wait(10)
        assert got == list(range(1, 21))
        conn.set_callback(None)
    # It said goodbye: the server no longer lists it.
    with Connection(path, "py-observer") as observer:
        deadline = time.monotonic() + 5
        while "py-named" in Api(observer).call("cli_inband", cmd="show api clients").reply:
            assert time.monotonic() < deadline, "py-named still listed"
            time.sleep(0.05)


def test_shared_memory_errors(shm_server):
    with pytest.raises(VlcError) as e:
        Connection.attach_shm("py-nowhere", prefix="no-such-prefix-%d" % os.getpid())
    assert e.value.code == vlibclient.VLC_E_CONNECT
    assert "named segment" in e.value.message


def test_silent_shared_memory_connections_keep_answering(keepalive_server):
    """The server pings shared-memory clients silent for 0.5 s (one ping per second, since the
    ping consumed counts as activity for the next scan); the library's thread answers while
    Python sleeps and while it computes holding the GIL."""
    path, prefix, log = keepalive_server
    conns = [Connection(path, "py-ka-pivot", shm=True), Connection.attach_shm("py-ka-named", prefix=prefix)]
    try:
        time.sleep(6.0)
        asleep = [c.keepalives_answered for c in conns]
        end = time.monotonic() + 6.0
        x = 0
        while time.monotonic() < end:
            x += 1
        answered = [c.keepalives_answered for c in conns]
        print("keepalive answered %s (%s while asleep)" % (answered, asleep))
        for total, before in zip(answered, asleep):
            assert before >= 3, (answered, asleep)
            assert total - before >= 3, (answered, asleep)
            assert total >= 10, (answered, asleep)
        # A socket connection sees both listed, healthy (a ping may be in flight at the very
        # moment of a look, so look a few times).
        with Connection(path, "py-ka-observer") as observer:
            api = Api(observer)
            deadline = time.monotonic() + 5
            while True:
                text = api.call("cli_inband", cmd="show api clients").reply
                shm_part = text.split("Shared memory clients", 1)[-1]
                lines = [line for line in shm_part.splitlines() if "py-ka-pivot" in line or "py-ka-named" in line]
                if len(lines) == 2 and all(line.split()[-1] == "OK" for line in lines):
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.05)
        with open(log) as f:
            server_log = f.read()
        assert "does not answer pings" not in server_log, server_log
        # And both still work.
        for conn in conns:
            conn.send(ping_bytes(conn, 4242))
            assert struct.unpack_from(">HI", conn.recv(timeout=5))[1] == 4242
    finally:
        for conn in conns:
            conn.disconnect()


def test_silent_python_keeps_answering_pings(pinging_server):
    with Connection(pinging_server, "py-silent", idle_poll=0.01) as conn:
        # Silent, asleep.
        time.sleep(1.0)
        asleep = conn.keepalives_answered
        # Silent, busy in Python code that holds the GIL.
        end = time.monotonic() + 1.0
        x = 0
        while time.monotonic() < end:
            x += 1
        busy = conn.keepalives_answered - asleep
        # One ping per 20 ms: about 50 in each second. The bound is loose because the machine
        # may be slow; a library that does not answer on its own gets zero.
        assert asleep >= 10, asleep
        assert busy >= 10, busy
        # Pings never reach Python.
        assert conn.recv(timeout=0) is None
        print("silent answered %d" % conn.keepalives_answered)
