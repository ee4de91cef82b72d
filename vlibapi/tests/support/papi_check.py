"""Packs and unpacks messages with the real vpp_papi serializer, against our get_api_json.

Input (argv[1], JSON): {"api_json": path, "table": {name_crc: id}, "cases": [{"msg": name,
"id": id, "args": {...}, "ours": hex}]}. Output (stdout, JSON): {"packed": [hex...],
"unpacked": [dict...], "functions": [names of api.x() built through the bootstrap path]}.
"""
import json
import sys

from vpp_papi.vpp_papi import VPPApiClient, VPPApiJSONFiles


def plain(v):
    if hasattr(v, "_asdict"):
        return {k: plain(x) for k, x in v._asdict().items()}
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, int):
        return int(v)
    return v


def main():
    spec = json.load(open(sys.argv[1]))
    text = open(spec["api_json"]).read()
    messages, services = VPPApiJSONFiles.process_json_array_str(text)
    # Every service names messages that exist, so api.x() can be built for it.
    for req, svc in services.items():
        assert req in messages, req
        assert svc["reply"] == "null" or svc["reply"] in messages, svc
    out = {"packed": [], "unpacked": []}
    for case in spec["cases"]:
        msg = messages[case["msg"]]
        args = dict(case["args"])
        args["_vl_msg_id"] = case["id"]
        out["packed"].append(bytes(msg.pack(args)).hex())
        t, size = msg.unpack(bytes.fromhex(case["ours"]))
        d = plain(t)
        d.pop("_0", None)
        d["__size"] = size
        out["unpacked"].append(d)

    # The bootstrap path of VPPApiClient(bootstrapapi=True): load our JSON on top of the
    # bundled memclnt and build api.x() from our message table.
    client = VPPApiClient(bootstrapapi=True, server_address="/nonexistent")
    table = spec["table"]
    client.transport.get_msg_index = lambda name: table.get(name, 0)
    client.vpp_dictionary_maxid = max(table.values())
    client.messages.update(messages)
    client.services.update(services)
    client._register_functions(do_async=False)
    out["functions"] = sorted(n for n in dir(client.api) if not n.startswith("_"))
    json.dump(out, sys.stdout)


main()
