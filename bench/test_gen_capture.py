"""Self-test of bench/gen_capture.py: checksums, addresses, expected streams.

Run: python3 -m pytest bench/test_gen_capture.py -q   (needs dpkt; not mos)
"""
import hashlib
import ipaddress
import json
import os
import socket
import struct
import sys

import pytest

dpkt = pytest.importorskip("dpkt")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_capture  # noqa: E402

V4NET = ipaddress.ip_network("198.18.0.0/15")
V6NET = ipaddress.ip_network("2001:db8::/32")


def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _ep(ip, port):
    return gen_capture.fmt_endpoint(ip, port)


def _check(path):
    with open(path + ".expected.json") as f:
        exp = json.load(f)
    streams = {}
    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            n += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            raw_ip = bytes(buf[14:])
            if isinstance(ip, dpkt.ip.IP):
                assert _csum(raw_ip[:20]) == 0xFFFF, "IPv4 header checksum"
                seg = raw_ip[20:ip.len]
                pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 6, len(seg))
                assert ipaddress.ip_address(ip.src) in V4NET
                assert ipaddress.ip_address(ip.dst) in V4NET
            else:
                assert isinstance(ip, dpkt.ip6.IP6)
                seg = raw_ip[40:40 + ip.plen]
                pseudo = ip.src + ip.dst + struct.pack("!IxxxB", len(seg), 6)
                assert ipaddress.ip_address(ip.src) in V6NET
                assert ipaddress.ip_address(ip.dst) in V6NET
            assert _csum(pseudo + seg) == 0xFFFF, "TCP checksum"
            tcp = ip.data
            key = (_ep(ip.src, tcp.sport), _ep(ip.dst, tcp.dport))
            st = streams.setdefault(key, [None, bytearray()])
            if tcp.flags & dpkt.tcp.TH_SYN:
                st[0] = (tcp.seq + 1) & 0xFFFFFFFF
            elif tcp.data:
                # in order, no retransmissions: each segment starts where the last ended
                assert tcp.seq == (st[0] + len(st[1])) & 0xFFFFFFFF
                st[1] += tcp.data
    assert n == exp["meta"]["packets"]
    for fl in exp["flows"]:
        c, s = fl["client"], fl["server"]
        for d, key in (("c2s", (c, s)), ("s2c", (s, c))):
            data = bytes(streams[key][1])
            assert len(data) == fl[d + "_bytes"]
            assert hashlib.sha256(data).hexdigest() == fl[d + "_sha256"]
    assert len(streams) == 2 * exp["meta"]["flows"]
    return exp


def test_closed_flows(tmp_path):
    p = str(tmp_path / "c.pcap")
    meta = gen_capture.generate(p, packets=20000, concurrent=300, seed=3, quiet=True)
    assert meta["max_concurrent"] == 300
    assert 20000 <= meta["packets"] < 20000 + 100
    exp = _check(p)
    assert 0 < meta["ipv6_flows"] < meta["flows"]
    assert {f["closer"] for f in exp["flows"]} == {"client", "server"}


def test_open_flows_and_determinism(tmp_path):
    a, b = str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")
    gen_capture.generate(a, open_flows=500, seed=5, quiet=True)
    gen_capture.generate(b, open_flows=500, seed=5, quiet=True)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    exp = _check(a)
    assert exp["meta"]["packets"] == 6 * 500
    assert all(f["closer"] is None for f in exp["flows"])


def test_unique_tuples(tmp_path):
    p = str(tmp_path / "u.pcap")
    gen_capture.generate(p, open_flows=3000, seed=1, quiet=True)
    with open(p + ".expected.json") as f:
        flows = json.load(f)["flows"]
    assert len({(f["client"], f["server"]) for f in flows}) == len(flows)
    # endpoints parse back
    for f in flows[:50]:
        host = f["client"].rsplit(":", 1)[0].strip("[]")
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
