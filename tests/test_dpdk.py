"""The DPDK port (mos.ports.dpdk) on real traffic: two namespaces joined only
by a forwarder over two net_af_packet vdevs (tests/_vethbed.py).

The EAL starts once per process, so each scenario runs tests/dpdk_forwarder.py
in a subprocess with a timeout. Needs root, libdpdk at build time, iproute2,
ethtool, curl and ping; skips with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import time

import _netpkt as N
import pytest
from _vethbed import SERVER4, SERVER6, VethBed

from mos.errors import ConfigError, MosError
from mos.ports import dpdk

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARDER = os.path.join(HERE, "dpdk_forwarder.py")
PORT = 8098
FILE_SIZE = 2 << 20


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_PACKET)"
    ok, reason = dpdk.available()
    if not ok:
        return reason
    for tool in ("ip", "ethtool", "curl", "ping"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


needs_bed = pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))


# ---- without the compiled module (no root needed) ----


def test_driver_unavailable_raises_clear_error(monkeypatch):
    monkeypatch.setattr(dpdk, "lib", None)
    monkeypatch.setattr(dpdk, "ffi", None)
    monkeypatch.setattr(dpdk, "_why_unavailable", dpdk.UNAVAILABLE)
    assert dpdk.available() == (False, dpdk.UNAVAILABLE)
    with pytest.raises(MosError, match=r"libdpdk was not found when mos was built \(apt-get"):
        dpdk.DpdkPort(0, ["--no-huge"])


def test_port_arguments_out_of_range_raise_before_eal():
    with pytest.raises(MosError, match="port_id: -1"):
        dpdk.DpdkPort(-1, [])
    with pytest.raises(MosError, match="nb_desc: 0"):
        dpdk.DpdkPort(0, [], nb_desc=0)


def test_af_packet_vdevs_get_a_queue_pair_per_worker():
    args = ["--no-huge", "--vdev=net_af_packet0,iface=c1", "--vdev", "net_af_packet1,iface=s1",
            "--vdev=net_pcap0,iface=x"]
    assert dpdk.eal_args_for_queues(args, 1) == [
        "--no-huge", "--vdev=net_af_packet0,iface=c1,qpairs=1", "--vdev",
        "net_af_packet1,iface=s1,qpairs=1", "--vdev=net_pcap0,iface=x"]
    # several: a deeper kernel ring too, unless given
    assert dpdk.eal_args_for_queues(
        ["--vdev=net_af_packet0,iface=c1,framecnt=1024", "--vdev=eth_af_packet1,iface=s1,qpairs=3"],
        3) == ["--vdev=net_af_packet0,iface=c1,framecnt=1024,qpairs=3",
               "--vdev=eth_af_packet1,iface=s1,qpairs=3,framecnt=4096"]
    for given in (1, 4):
        with pytest.raises(ConfigError, match=rf"eal_args\[1\]: '--vdev=net_af_packet0,iface=c1,"
                                              rf"qpairs={given}' has qpairs={given}, but workers "
                                              r"is 2: each worker needs its own rx/tx queue pair"):
            dpdk.eal_args_for_queues(
                ["--no-pci", f"--vdev=net_af_packet0,iface=c1,qpairs={given}"], 2)


@pytest.mark.skipif(not dpdk.available()[0], reason=dpdk.available()[1])
def test_vdev_on_missing_interface_raises_config_error_before_eal():
    # checked before rte_eal_init (which would only log it), so no EAL starts here
    with pytest.raises(ConfigError, match=r"eal_args\[1\]: .*no network interface 'mosnosuch0'"):
        dpdk.DpdkPort(0, ["--no-huge", "--vdev=net_af_packet0,iface=mosnosuch0"])
    assert not dpdk.lib.mos_dpdk_initialized()


# ---- software steering: the flow hash (no EAL, no root) ----

needs_lib = pytest.mark.skipif(not dpdk.available()[0], reason=dpdk.available()[1])


def _eth(l3: bytes, ethertype: int, vlans=()) -> bytes:
    return N.eth(l3, ethertype, vlans=vlans)


def _l4(proto: str, sport: int, dport: int) -> bytes:
    if proto == "tcp":
        return N.tcp(sport, dport, flags=0x10, payload=b"x" * 20)
    return N.udp(sport, dport, payload=b"x" * 20)


def _v4(src: str, dst: str, sport: int, dport: int, proto="tcp", vlans=(), mf=0,
        offset=0) -> bytes:
    """offset: the fragment offset field (8-byte units)."""
    ip = N.ip4(src, dst, 6 if proto == "tcp" else 17, _l4(proto, sport, dport), flags=mf,
               frag_off=offset * 8)
    return _eth(ip, 0x0800, vlans)


def _v6(src: str, dst: str, sport: int, dport: int, proto="tcp", vlans=(), ext=()) -> bytes:
    """ext: (next-header number, bytes) extension headers put before the TCP/UDP header."""
    exts = [(num, lambda nh, body=body: bytes([nh]) + body) for num, body in ext]
    ip = N.ip6(src, dst, exts, 6 if proto == "tcp" else 17, _l4(proto, sport, dport))
    return _eth(ip, 0x86DD, vlans)


def _mpls(frame: bytes, labels) -> bytes:
    """The frame's IP packet under an MPLS label stack instead of its ethertype."""
    return N.mpls(frame[14:], labels)


def _pppoe(frame: bytes) -> bytes:
    return N.pppoe(frame[14:], 0x0021 if frame[12:14] == b"\x08\x00" else 0x0057)


def _steer(frame: bytes) -> tuple[int, int]:
    """(kind, hash) of a frame; hash 0 when kind is NONE."""
    h = dpdk.ffi.new("uint32_t *")
    kind = dpdk.lib.mos_dpdk_steer_hash(frame, len(frame), h)
    return kind, h[0] if kind else 0


HBH = bytes([0]) + bytes(6)                 # hop-by-hop: length 0 (8 bytes), padding
ROUTING = bytes([0, 0, 0]) + bytes(4)       # type 0, segments left 0, 8 bytes
DSTOPT = bytes([1]) + bytes(14)             # destination options: 16 bytes
FRAG6 = bytes([0]) + struct.pack("!HI", 1, 77)  # offset 0, M set


def _addrs(rng, v6: bool) -> tuple[str, str]:
    if v6:
        return tuple(f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
                     for _ in range(2))
    return tuple(f"198.{rng.choice((18, 19))}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                 for _ in range(2))


@needs_lib
def test_steer_hash_is_the_same_both_ways_for_tcp_and_udp():
    rng = random.Random(7)
    owners = [0, 0]
    for i in range(2000):
        v6, proto = i % 2 == 1, rng.choice(("tcp", "udp"))
        a, b = _addrs(rng, v6)
        sp, dp = rng.randrange(65536), rng.randrange(65536)
        vlans = rng.choice(((), ((0x8100, 5),), ((0x88A8, 100), (0x8100, 7))))
        mk = _v6 if v6 else _v4
        kw = {"ext": rng.choice(((), ((0, HBH),), ((0, HBH), (43, ROUTING), (60, DSTOPT))))} \
            if v6 else {}
        fwd, rev = mk(a, b, sp, dp, proto, vlans, **kw), mk(b, a, dp, sp, proto, vlans, **kw)
        kf, hf = _steer(fwd)
        assert kf == dpdk.lib.MOS_DPDK_STEER_PORTS, fwd.hex()
        assert _steer(rev) == (kf, hf), (a, b, sp, dp, proto, vlans)
        # tags, labels and extension headers are skipped: the same flow, the same hash
        plain = mk(a, b, sp, dp, proto)
        assert _steer(plain) == (kf, hf)
        assert _steer(_mpls(plain, [16 + i % 1000])) == (kf, hf)  # each way its own labels
        plain_rev = mk(b, a, dp, sp, proto)
        assert _steer(_mpls(plain_rev, [17, 99 + i])) == (kf, hf)
        assert _steer(_pppoe(plain_rev)) == (kf, hf)
        for nq in (2, 3, 4, 7):
            o = dpdk.lib.mos_dpdk_steer_owner(fwd, len(fwd), nq)
            assert o == dpdk.lib.mos_dpdk_steer_owner(rev, len(rev), nq) == hf % nq
        owners[hf % 2] += 1
        # the ports count: another source port moves most flows
        assert _steer(mk(a, b, sp ^ 1, dp, proto, vlans, **kw))[1] != hf
    assert min(owners) > 800, owners  # spread over the queues


@needs_lib
def test_steer_hash_of_fragments_and_other_protocols_is_the_address_pair():
    a, b = "198.18.0.1", "198.18.0.2"
    icmp = _eth(N.ip4(a, b, 1, b"\x08\x00\x00\x00\x00\x01\x00\x01ping"), 0x0800)
    icmp_back = _eth(N.ip4(b, a, 1, b"\x00\x00\x00\x00\x00\x01\x00\x01ping"), 0x0800)
    kind, pair = _steer(icmp)
    assert kind == dpdk.lib.MOS_DPDK_STEER_ADDRS
    assert _steer(icmp_back) == (kind, pair)
    # a TCP segment's first fragment (ports present) and a later one (none): both by address
    assert _steer(_v4(a, b, 40000, 80, mf=1)) == (kind, pair)
    assert _steer(_v4(b, a, 80, 40000, offset=185)) == (kind, pair)
    assert _steer(_v4(a, b, 40000, 80, "udp", mf=1, offset=3)) == (kind, pair)
    assert _steer(_v4(a, b, 40000, 80))[0] == dpdk.lib.MOS_DPDK_STEER_PORTS
    c, d = "2001:db8::1", "2001:db8::2"
    k6, pair6 = _steer(_v6(c, d, 40000, 80, ext=((44, FRAG6),)))
    assert k6 == dpdk.lib.MOS_DPDK_STEER_ADDRS
    assert _steer(_v6(d, c, 80, 40000, ext=((0, HBH), (44, FRAG6)))) == (k6, pair6)
    esp = _v6(c, d, 1, 2, ext=((50, bytes(7)),))  # ESP: no ports to read
    assert _steer(esp) == (k6, pair6)


@needs_lib
def test_steer_hash_leaves_non_ip_and_broken_frames_where_they_arrived():
    arp = _eth(bytes(28), 0x0806)
    too_many_tags = _v4("198.18.0.1", "198.18.0.2", 1, 2, vlans=[(0x8100, 1)] * 9)
    too_many_labels = _mpls(_v4("198.18.0.1", "198.18.0.2", 1, 2), list(range(17)))
    pw_control_word = _mpls(_eth(b"\x00" * 40, 0x0800), [5])
    lcp = _pppoe(_eth(b"\x00" * 40, 0x0800))
    lcp = lcp[:20] + b"\xc0\x21" + lcp[22:]
    bad_version = bytearray(_v4("198.18.0.1", "198.18.0.2", 1, 2))
    bad_version[14] = 0x65
    bad_ihl = bytearray(_v4("198.18.0.1", "198.18.0.2", 1, 2))
    bad_ihl[14] = 0x44
    for frame in (b"", b"\x00" * 13, arp, too_many_tags, too_many_labels, pw_control_word, lcp,
                  bytes(bad_version), bytes(bad_ihl)):
        assert _steer(frame) == (dpdk.lib.MOS_DPDK_STEER_NONE, 0), frame.hex()
        assert dpdk.lib.mos_dpdk_steer_owner(frame, len(frame), 2) == -1
    assert dpdk.lib.mos_dpdk_steer_owner(dpdk.ffi.NULL, 0, 2) == -1
    assert dpdk.lib.mos_dpdk_steer_owner(arp, len(arp), 0) == -1


# Each frame is put at the very end of a page followed by an unmapped one: a
# read past its length faults (in a child process, so the test reports it).
_GUARD = """
import ctypes, mmap, sys
from mos.ports.dpdk import ffi, lib
frames = [bytes.fromhex(x) for x in sys.stdin.read().split()]
page = mmap.PAGESIZE
mm = mmap.mmap(-1, 2 * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.mprotect(ctypes.c_void_p(base + page), page, 0) == 0
h = ffi.new("uint32_t *")
seen = 0
for f in frames:
    for n in range(len(f) + 1):
        mm[page - n:page] = f[:n]
        p = ffi.cast("const uint8_t *", base + page - n)
        kind = lib.mos_dpdk_steer_hash(p, n, h)
        seen += kind != 0
print(seen)
"""


@needs_lib
def test_steer_hash_never_reads_past_the_frame():
    rng = random.Random(11)
    frames = [
        _v4("198.18.0.1", "198.18.0.2", 1, 2, vlans=((0x88A8, 1), (0x8100, 2))),
        _v4("198.18.0.1", "198.18.0.2", 1, 2, "udp", offset=5),
        _v6("2001:db8::1", "2001:db8::2", 1, 2, ext=((0, HBH), (43, ROUTING), (60, DSTOPT))),
        _v6("2001:db8::1", "2001:db8::2", 1, 2, "udp", ext=((0, HBH), (44, FRAG6))),
        _v6("2001:db8::1", "2001:db8::2", 1, 2, ext=((0, bytes([255]) + bytes(6)),)),
    ]
    frames += [_mpls(frames[0], [1, 2, 3]), _pppoe(frames[2])]
    # extension-header lengths and IHLs that point far past the end
    big_hbh = bytearray(frames[2])
    big_hbh[14 + 40 + 1] = 255
    frames.append(bytes(big_hbh))
    frames += [bytes(rng.randrange(256) for _ in range(rng.randrange(14, 120))) for _ in range(200)]
    # random bytes behind valid Ethernet/IP starts
    for et, ver in ((b"\x08\x00", 0x45), (b"\x86\xdd", 0x60), (b"\x88\x47", 0x00),
                    (b"\x88\x64", 0x11), (b"\x81\x00", 0x00)):
        for _ in range(200):
            frames.append(b"\x02" * 12 + et + bytes([ver])
                          + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 90))))
    r = subprocess.run([sys.executable, "-c", _GUARD], input=" ".join(f.hex() for f in frames),
                       check=False, capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(HERE))
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert int(r.stdout) >= 7  # the whole valid frames did hash


# ---- scenarios in subprocesses ----


def _run_forwarder(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, FORWARDER, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_bed
def test_eal_bad_argument_and_missing_port_raise_clear_errors():
    r = _run_forwarder("errors")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bad_eal_arg"].startswith("DPDK EAL init failed: rte_eal_init: Invalid argument")
    assert "--no-such-eal-option" in out["bad_eal_arg"]
    assert out["bad_port"] == "DPDK port 7 does not exist (the EAL has port 0)"
    assert out["null_port_rx"] > 0  # net_null makes frames: the port works after both errors
    assert "already runs with" in out["other_eal_args"]
    assert out["closed_port"] == "DpdkPort(0) is closed"
    assert "port 0 was closed in this process and cannot open again" in out["reopen"]
    # --in-memory was accepted with --no-huge, and the EAL's folder is gone after exit
    assert re.search(r"/dpdk/mos\d+$", out["runtime_dir"]), out["runtime_dir"]
    assert not os.path.exists(out["runtime_dir"])
    assert "unrecognized option" in r.stderr  # EAL's usage text went to stderr, not stdout


@pytest.mark.skipif(os.geteuid() != 0 or not dpdk.available()[0],
                    reason="needs root and the dpdk driver")
def test_steering_hands_each_frame_to_its_flows_queue_and_counts_every_loss():
    """Also: where worker threads run (the EAL pins the thread that starts it)."""
    r = _run_forwarder("steer", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # worker threads: with one lcore (-l 0) and two workers, not all on its CPU
    before, main = out["cpus_before"], out["cpus_main"]
    assert main == [0]
    assert out["cpus_workers"] == [main, before, before]
    assert out["steering"]  # net_ring has no RSS
    owners = out["owners"]
    assert out["sent"] == len(owners)
    # every frame came out exactly once, on its flow's queue; no flow (ARP,
    # truncated): on the queue it arrived on
    assert sorted(out["q0"] + out["q1"]) == list(range(len(owners)))
    assert all(owners[i] in (0, -1) for i in out["q0"])
    assert all(owners[i] == 1 for i in out["q1"])
    assert owners[-2:] == [-1, -1] and len(out["q1"]) > 100
    q0, q1 = out["after_mix"]
    # counted once, where the device put it
    assert (q0["rx"], q1["rx"]) == (len(owners), 0)
    assert q0["steered"] == q1["steer_taken"] == len(out["q1"])
    # a full ring drops, and says so
    q0, q1 = out["after_full"]
    assert out["pushed"] == 3000
    assert q0["steer_dropped"] == q0["rx_dropped"] == 3000 - out["drained"] > 0
    assert q0["steered"] - len(out["q1"]) == out["drained"]
    # what is left in a ring at the end is freed and counted
    q0, q1 = out["after_flush"]
    assert out["flushed"] == 100
    assert q0["steer_dropped"] == q0["rx_dropped"] == 3000 - out["drained"] + 100
    assert q0["steered"] == q1["steer_taken"] + 100


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    why = _why_skip()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("www")
    (root / "f.bin").write_bytes(os.urandom(FILE_SIZE))
    with VethBed() as b:
        srv = subprocess.Popen(
            b.in_server(
                sys.executable, "-m", "http.server", "--bind", "::", "-d", str(root), str(PORT)
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):  # bounded: 10 s
                probe = subprocess.run(
                    b.in_server("curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PORT}/"),
                    check=False,
                )
                if probe.returncode == 0:
                    break
                time.sleep(0.1)
            b.www = root
            yield b
        finally:
            srv.kill()
            srv.wait(timeout=10)


def _forward_and_drive(bed: VethBed, mode: str, tmp_path, curl: bool = True) -> dict:
    """Start the forwarder, ping v4 and v6, curl over v4 and v6, stop it; collect results."""
    fw = subprocess.Popen(
        [sys.executable, FORWARDER, mode, bed.a, bed.b, "--seconds", "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    res: dict = {"curl": {}}
    try:
        ready, _, _ = select.select([fw.stdout], [], [], 20)
        line = fw.stdout.readline() if ready else ""
        assert line.strip() == "READY", f"forwarder did not start: {line!r}"
        for name, dst in (("ping4", SERVER4), ("ping6", SERVER6)):
            res[name] = subprocess.run(
                bed.in_client("ping", "-c", "3", "-i", "0.2", "-W", "3", dst),
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            ).returncode
        if curl:
            for name, host in (("v4", SERVER4), ("v6", f"[{SERVER6}]")):
                out = tmp_path / f"{mode}-{name}.bin"
                r = subprocess.run(
                    bed.in_client(
                        "curl",
                        "-sS",
                        "--max-time",
                        "20",
                        "-o",
                        str(out),
                        f"http://{host}:{PORT}/f.bin",
                    ),
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                res["curl"][name] = (
                    r.returncode,
                    r.stderr.strip(),
                    hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None,
                )
    finally:
        fw.terminate()
        try:
            stdout, stderr = fw.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            fw.kill()
            stdout, stderr = fw.communicate()
    assert fw.returncode == 0, stderr[-2000:]
    res["stats"] = json.loads(stdout.strip().splitlines()[-1])
    return res


@pytest.fixture(scope="module")
def runs(bed, tmp_path_factory):
    """One forwarder run per mode, shared by the tests that check its parts."""
    cache: dict = {}

    def get(mode: str) -> dict:
        if mode not in cache:
            cache[mode] = _forward_and_drive(
                bed, mode, tmp_path_factory.mktemp(mode), curl=mode != "slow"
            )
        return cache[mode]

    return get


def _sha(bed: VethBed) -> str:
    return hashlib.sha256((bed.www / "f.bin").read_bytes()).hexdigest()


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy", "slow"])
def test_forwarder_ping_v4_and_v6_cross(bed, runs, mode):
    r = runs(mode)
    assert (r["ping4"], r["ping6"]) == (0, 0)


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy"])
def test_forwarder_curl_2mb_v4_and_v6_byte_identical(bed, runs, mode):
    r = runs(mode)
    want = _sha(bed)
    for family in ("v4", "v6"):
        rc, err, got = r["curl"][family]
        assert rc == 0, f"curl over {family}: {err}"
        assert got == want, f"curl over {family}: the download differs from the file"


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy"])
def test_forwarder_stats_count_every_frame_once(bed, runs, mode):
    s = runs(mode)["stats"]
    a, b = s["a"], s["b"]
    # what one port received, the other sent or dropped (nothing is lost in between)
    assert a["rx"] == b["tx"] + b["tx_dropped"]
    assert b["rx"] == a["tx"] + a["tx_dropped"]
    # the server side carried two downloads of the file, headers and framing on top
    assert b["rx_bytes"] > 2 * FILE_SIZE
    assert b["rx"] > 2 * FILE_SIZE // 1514
    assert a["tx_bytes"] <= b["rx_bytes"]
    if a["tx_dropped"] == 0:
        assert a["tx_bytes"] == b["rx_bytes"]
    assert all(v >= 0 for port in (a, b) for v in port.values())


@needs_bed
def test_slow_helpers_recv_burst_send_forward(bed, runs):
    s = runs("slow")["stats"]
    assert s["a"]["rx"] >= 6 and s["b"]["rx"] >= 6  # 3 echo requests and replies per family
    assert s["a"]["rx"] == s["b"]["tx"] + s["b"]["tx_dropped"]


@needs_bed
def test_bed_without_forwarder_does_not_connect(bed):
    """The control: with nothing bridging the root-side ends, no ping crosses."""
    r = subprocess.run(
        bed.in_client("ping", "-c", "1", "-W", "1", SERVER4),
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode != 0
