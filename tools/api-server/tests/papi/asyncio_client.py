"""The unmodified vpp_papi asyncio client against our server: pipelined requests and a dump.

Usage: asyncio_client.py SOCKET SERVER_PID. Exits non-zero on any mismatch.
"""
import asyncio
import sys

from vpp_papi.vpp_papi_async import VPPApiClient

sock, server_pid = sys.argv[1], int(sys.argv[2])


async def main():
    vpp = VPPApiClient(server_address=sock, read_timeout=10)
    events = asyncio.Queue()
    assert await vpp.connect("papi-asyncio", events) == 0

    r = await vpp.api.control_ping()
    assert r.retval == 0 and r.vpe_pid == server_pid, r

    # Thousands in flight at once, matched by context.
    replies = await asyncio.gather(*[vpp.api.control_ping() for _ in range(2000)])
    assert len(replies) == 2000 and all(x.retval == 0 for x in replies)
    assert len({x.context for x in replies}) == 2000

    v = await vpp.api.show_version()
    assert v.program == "api-server", v

    c = await vpp.api.cli_inband(cmd="show api clients")
    assert "papi-asyncio" in c.reply, c

    adds = await asyncio.gather(
        *[vpp.api.sw_thing_add_del(is_add=True, name=f"t{i}", count=i) for i in range(50)]
    )
    assert all(a.retval == 0 for a in adds), adds

    # An old-style dump: the reply is (control_ping_reply, [details...]).
    ping, things = await vpp.api.sw_thing_dump()
    assert ping.retval == 0
    assert sorted(t.name for t in things) == sorted(f"t{i}" for i in range(50)), things

    await vpp.disconnect()
    print("asyncio ok")


asyncio.run(main())
