"""The unmodified vpp_papi (threaded client) against our server.

Usage: threaded.py SOCKET SERVER_PID. Exits non-zero (an assertion) on any mismatch.
"""
import os
import sys
import threading

from vpp_papi import VPPApiClient

sock, server_pid = sys.argv[1], int(sys.argv[2])

vpp = VPPApiClient(server_address=sock, bootstrapapi=True, read_timeout=10)
assert vpp.connect("papi-threaded") == 0

r = vpp.api.control_ping()
assert r.retval == 0 and r.vpe_pid == server_pid, r

v = vpp.api.show_version()
assert v.retval == 0 and v.program == "api-server", v

c = vpp.api.cli_inband(cmd="show api clients")
assert c.retval == 0 and "papi-threaded" in c.reply, c

bad = vpp.api.cli_inband(cmd="no such command")
assert bad.retval == -1 and "unknown input" in bad.reply, bad

first = vpp.api.get_first_msg_id(name="example")
assert first.retval == 0 and first.first_msg_id > 28, first

versions = vpp.api.api_versions()
names = [m.name for m in versions.api_versions]
assert "memclnt" in names and "example" in names, names

# Events: subscribe, then cause one; the callback gets it.
events = []
got = threading.Event()


def on_event(msgname, msg):
    events.append((msgname, msg))
    got.set()


vpp.register_event_callback(on_event)
r = vpp.api.want_sw_thing_events(enable=True, pid=os.getpid())
assert r.retval == 0, r
r = vpp.api.sw_thing_add_del(is_add=True, name="from-papi", count=7, enable=True)
assert r.retval == 0, r
assert got.wait(10), "no event"
assert events[0][0] == "sw_thing_event" and events[0][1].name == "from-papi", events

# A duplicate is refused with VPP's EntryAlreadyExists.
r = vpp.api.sw_thing_add_del(is_add=True, name="from-papi")
assert r.retval == -116, r

# Dumps end with control_ping, as papi sends them.
things = vpp.api.sw_thing_dump()
assert [(t.name, t.count, t.enable) for t in things] == [("from-papi", 7, True)], things
clients = vpp.api.api_client_dump()
assert any(c.name == "papi-threaded" and c.pid == os.getpid() for c in clients), clients

r = vpp.api.sw_thing_add_del(is_add=False, name="from-papi")
assert r.retval == 0, r
assert vpp.api.sw_thing_dump() == []

r = vpp.disconnect()
assert r.response == 1, r  # VPP answers a successful delete with 1
print("threaded ok")
