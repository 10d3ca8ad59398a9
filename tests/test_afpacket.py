"""AF_PACKET port (mos.ports._afpacket) on veth pairs in private namespaces.

Each test builds its own wires: a namespace mosafp<pid>_<n> holding the inner
end (a0, 198.18.99.x/24 and 2001:db8:99::x/64, RFC 2544 / RFC 3849 ranges)
and the outer end mf<pid><tag><n> in the root namespace, with no address and
IPv6 off so the root stack stays quiet on it.  Offloads are off on both ends
(DESIGN §5), so frames are MTU-sized.  Teardown removes everything, also when
a test fails; names left by dead test processes are swept first.

Needs root (CAP_NET_RAW, CAP_NET_ADMIN), iproute2, ethtool, ping and curl.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from netbed import live_skip_reason

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLOADS = ["rx", "tx", "sg", "tso", "gso", "gro"]
ETH_EXP = 0x88B5  # IEEE 802 local experimental EtherType 1


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "AF_PACKET is Linux only"
    return live_skip_reason("ip", "ethtool", "ping", "curl")


_WHY = _why_not()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"AF_PACKET tests: {_WHY}")

if _WHY is None:
    from mos.ports._afpacket import AfPacketPort, forward_loop


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep() -> None:
    """Remove namespaces and links left by test processes that are gone."""
    out = sh("ip", "netns", "list", check=False).stdout
    for m in re.finditer(r"^mosafp(\d+)_\d+", out, re.MULTILINE):
        if not _alive(int(m.group(1))):
            sh("ip", "netns", "del", m.group(0), check=False)
    out = sh("ip", "-o", "link", "show", check=False).stdout
    for m in re.finditer(r"^\d+: (mf(\d+)[a-z]\d+)[@:]", out, re.MULTILINE):
        if not _alive(int(m.group(2))):
            sh("ip", "link", "del", m.group(1), check=False)


_counter = [0]


class Bed(contextlib.ExitStack):
    """Namespaces with one veth each; the outer ends stay in the root ns."""

    def __init__(self):
        super().__init__()
        self.procs: list[subprocess.Popen] = []

    def __exit__(self, *exc):
        self._kill_procs()  # processes first, then links and namespaces
        return super().__exit__(*exc)

    def wire(self, tag: str, host: int, ipv6: bool = True) -> tuple[str, str]:
        """Make namespace + veth; returns (ns, outer) with a0 = 198.18.99.<host>."""
        _counter[0] += 1
        n = _counter[0]
        ns = f"mosafp{os.getpid()}_{n}"
        outer = f"mf{os.getpid()}{tag}{n}"
        assert len(outer) <= 15
        sh("ip", "netns", "add", ns)
        self.callback(sh, "ip", "netns", "del", ns, check=False)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "a0", "netns", ns)
        # deleting the namespace removes the pair only asynchronously: delete it now
        self.callback(sh, "ip", "link", "del", outer, check=False)
        sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1")
        if not ipv6:
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        for off in OFFLOADS:
            sh("ethtool", "-K", outer, off, "off", check=False)
            sh("ip", "netns", "exec", ns, "ethtool", "-K", "a0", off, "off", check=False)
        sh("ip", "-n", ns, "addr", "add", f"198.18.99.{host}/24", "dev", "a0")
        if ipv6:
            sh("ip", "-n", ns, "addr", "add", f"2001:db8:99::{host}/64", "dev", "a0", "nodad")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "a0", "up")
        sh("ip", "link", "set", outer, "up")
        return ns, outer

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    def python(self, ns: str, script: str, *args: str, **kw) -> subprocess.Popen:
        return self.popen(ns, sys.executable, "-c", script, *args, **kw)

    def _kill_procs(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(timeout=5)


@pytest.fixture
def bed():
    _sweep()
    with Bed() as b:
        yield b


def mac_of(ns: str, dev: str = "a0") -> bytes:
    out = sh("ip", "-n", ns, "link", "show", dev).stdout
    return bytes.fromhex(re.search(r"link/ether ([0-9a-f:]+)", out).group(1).replace(":", ""))


def neigh(ns: str, ip: str, mac: str = "02:00:00:00:00:02") -> None:
    sh("ip", "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", "a0")


def drain(port, seconds: float = 0.05) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        port.recv_burst(256)


def collect(port, until, timeout: float) -> list[bytes]:
    """recv_burst until until(frames) is true or timeout seconds pass."""
    frames: list[bytes] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        frames += [f for _, f in port.recv_burst(256)]
        if until(frames):
            break
    return frames


# raw-socket helpers run inside a namespace (python3 -c)
SEND_RAW = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("a0", 0))
for line in sys.stdin:
    s.send(bytes.fromhex(line.strip()))
"""

RECV_RAW = r"""
import socket, sys, time
want, ethertype = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
s.bind(("a0", ethertype))
s.settimeout(0.2)
print("ready", flush=True)
got, end = [], time.monotonic() + 15
while len(got) < want and time.monotonic() < end:
    try:
        got.append(s.recv(65536))
    except socket.timeout:
        pass
for f in got:
    print(f.hex())
"""

SEND_UDP = r"""
import socket, sys
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"mosfan%05d" % i, ("198.18.99.2", 20000 + i))
"""


def test_open_missing_interface_names_it():
    with pytest.raises(FileNotFoundError, match=r"no such interface 'mosnope0'"):
        AfPacketPort("mosnope0")


def _drop_cap_net_raw() -> None:
    """preexec_fn: take CAP_NET_RAW out of the bounding set, so the exec'd
    process runs as root without it (prctl PR_CAPBSET_DROP = 24, CAP_NET_RAW = 13)."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(24, 13, 0, 0, 0) != 0:
        os._exit(99)


def test_open_without_cap_net_raw_says_run_as_root():
    """Without CAP_NET_RAW the error names the capability, not a bare EPERM."""
    script = (
        "from mos.ports._afpacket import AfPacketPort\n"
        "try:\n    AfPacketPort('lo')\n"
        "except PermissionError as e:\n    print('PERM', e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        preexec_fn=_drop_cap_net_raw,
        capture_output=True,
        text=True,
        timeout=20,
    )
    if r.returncode == 99:
        pytest.skip("cannot drop CAP_NET_RAW here")
    assert "AF_PACKET needs CAP_NET_RAW (run as root)" in r.stdout, r.stdout + r.stderr


def test_rx_idle_returns_zero_within_poll_ms(bed):
    _ns, outer = bed.wire("q", 1, ipv6=False)
    with AfPacketPort(outer, poll_ms=1) as p:
        drain(p, 0.1)
        t = time.monotonic()
        assert p.recv_burst() == []
        assert time.monotonic() - t < 0.25  # 1 ms asked; generous for a loaded machine
        p.poll_ms = 0
        t = time.monotonic()
        for _ in range(100):
            assert p.recv_burst() == []
        assert time.monotonic() - t < 0.25


def test_rx_ping_v4_v6_echo_requests_seen_and_counted(bed):
    ns, outer = bed.wire("p", 1)
    neigh(ns, "198.18.99.2")
    neigh(ns, "2001:db8:99::2")
    with AfPacketPort(outer) as p:
        drain(p)
        base = p.stats()
        got: list[tuple[int, bytes]] = []
        p4 = bed.popen(
            ns,
            "ping",
            "-n",
            "-c",
            "5",
            "-i",
            "0.05",
            "-W",
            "0.2",
            "198.18.99.2",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        p6 = bed.popen(
            ns,
            "ping",
            "-6",
            "-n",
            "-c",
            "5",
            "-i",
            "0.05",
            "-W",
            "0.2",
            "2001:db8:99::2",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 6
        while time.monotonic() < end and (p4.poll() is None or p6.poll() is None):
            got += p.recv_burst(64)
        got += p.recv_burst(64)
        echo4 = [f for _, f in got if f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 8]
        echo6 = [f for _, f in got if f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == 128]
        assert len(echo4) == 5 and len(echo6) == 5, [f[:40].hex() for _, f in got]
        assert all(f[30:34] == bytes([198, 18, 99, 2]) for f in echo4)
        now = time.time_ns()
        assert all(now - 60 * 10**9 < ts <= now for ts, _ in got)
        st = p.stats()
        assert st["rx"] - base["rx"] == len(got)
        assert st["rx_bytes"] - base["rx_bytes"] == sum(len(f) for _, f in got)
        assert st["rx_dropped"] == 0


@pytest.mark.parametrize("tx", ["ring", "sendmmsg"])
def test_tx_burst_1000_frames_byte_identical(bed, tx):
    ns, outer = bed.wire("t", 1, ipv6=False)
    dst = mac_of(ns)
    rng = random.Random(7)
    frames = []
    for i in range(1000):
        body = struct.pack("!I", i) + rng.randbytes(rng.randint(46, 1496))
        frames.append(dst + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_EXP) + body)
    rcv = bed.python(ns, RECV_RAW, "1000", str(ETH_EXP), stdout=subprocess.PIPE, text=True)
    assert rcv.stdout.readline().strip() == "ready"
    with AfPacketPort(outer, tx=tx) as p:
        sent = 0
        for k in range(0, 1000, 64):
            sent += p.send(frames[k : k + 64])
        st = p.stats()
    out, _ = rcv.communicate(timeout=20)
    got = [bytes.fromhex(x) for x in out.split()]
    assert sent == 1000 and st["tx"] == 1000 and st["tx_dropped"] == 0, st
    assert st["tx_bytes"] == sum(map(len, frames))
    assert len(got) == 1000
    assert got == frames


@pytest.mark.parametrize("rx_ring", ["v3", "v2"])
@pytest.mark.parametrize("tpid", [0x8100, 0x88A8])
def test_rx_vlan_tag_stripped_by_kernel_is_restored(bed, tpid, rx_ring):
    """The kernel moves the 802.1Q/802.1ad tag into tp_vlan_tci; rx puts it back."""
    ns, outer = bed.wire("v", 1, ipv6=False)
    frames = []
    for i in range(20):
        tag = struct.pack("!HH", tpid, (3 << 13) | (100 + i))  # PCP 3, VID 100+i
        frames.append(
            b"\xff" * 6
            + b"\x02\x00\x00\x00\x00\x09"
            + tag
            + struct.pack("!H", ETH_EXP)
            + struct.pack("!I", i)
            + bytes(60)
        )
    with AfPacketPort(outer, rx_ring=rx_ring) as p:
        drain(p)
        snd = bed.python(ns, SEND_RAW, stdin=subprocess.PIPE, text=True)
        snd.communicate("".join(f.hex() + "\n" for f in frames), timeout=20)
        got = collect(p, lambda fs: len(fs) >= 20, 5)
        st = p.stats()
    assert got == frames
    assert st["vlan_restored"] == 20 and st["vlan_lost"] == 0


@pytest.mark.parametrize("rx_ring", ["v3", "v2"])
def test_rx_ring_overflow_counts_rx_dropped_and_recovers(bed, rx_ring):
    """Nobody reads: the ring fills, the kernel counts drops (tp_drops ->
    rx_dropped), and once drained the port receives again, in order."""
    ns, outer = bed.wire("o", 1, ipv6=False)
    neigh(ns, "198.18.99.2")
    kw = {"block_bytes": 64 << 10} if rx_ring == "v3" else {}
    with AfPacketPort(outer, ring_bytes=256 << 10, rx_ring=rx_ring, **kw) as p:
        drain(p)
        base = p.stats()["rx"]
        flood = bed.python(
            ns, SEND_UDP.replace('b"mosfan%05d" % i', 'b"mosfan%05d" % i + bytes(1200)'), "1000"
        )
        assert flood.wait(timeout=20) == 0
        got = collect(p, lambda fs: False, 0.3)
        st = p.stats()
        assert st["rx_dropped"] > 0 and 0 < len(got) < 1000, (len(got), st)
        assert st["rx"] - base == len(got)
        idx = [int(f[f.find(b"mosfan") + 6 : f.find(b"mosfan") + 11]) for f in got]
        assert idx == sorted(idx)
        again = bed.python(ns, SEND_UDP, "5")
        assert again.wait(timeout=20) == 0
        later = collect(p, lambda fs: len(fs) >= 5, 3)
        assert [f[f.find(b"mosfan") :][:11] for f in later] == [b"mosfan%05d" % i for i in range(5)]


def test_fanout_two_handles_share_every_frame_exactly_once(bed):
    ns, outer = bed.wire("f", 1, ipv6=False)
    neigh(ns, "198.18.99.2")
    group = random.randrange(1000, 60000)
    n = 300
    with (
        AfPacketPort(outer, fanout_group=group) as p1,
        AfPacketPort(outer, fanout_group=group) as p2,
    ):
        drain(p1), drain(p2)
        snd = bed.python(ns, SEND_UDP, str(n))
        seen: list[list[bytes]] = [[], []]
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(map(len, seen)) < n:
            for i, p in enumerate((p1, p2)):
                for _, f in p.recv_burst(64):
                    k = f.find(b"mosfan")
                    if k >= 0:
                        seen[i].append(f[k : k + 11])
        assert snd.wait(timeout=10) == 0
    allseen = seen[0] + seen[1]
    assert len(allseen) == n and len(set(allseen)) == n
    assert seen[0] and seen[1], (len(seen[0]), len(seen[1]))


@pytest.mark.parametrize("defrag", [True, False])
def test_fanout_defrag_flag_decides_whether_fragments_arrive_reassembled(bed, defrag):
    """PACKET_FANOUT_FLAG_DEFRAG hands the socket the reassembled datagram
    (too big to forward in-line); without it the fragments arrive as sent."""
    ns, outer = bed.wire("g", 1, ipv6=False)
    neigh(ns, "198.18.99.2")
    group = random.randrange(1000, 60000)
    with AfPacketPort(outer, fanout_group=group, fanout_defrag=defrag) as p:
        drain(p)
        pr = bed.popen(
            ns,
            "ping",
            "-n",
            "-c",
            "1",
            "-s",
            "3000",
            "-W",
            "0.2",
            "198.18.99.2",
            stdout=subprocess.DEVNULL,
        )
        pr.wait(timeout=10)
        got = collect(p, lambda fs: False, 0.3)
    sizes = sorted(len(f) for f in got if f[12:14] == b"\x08\x00")
    if defrag:
        assert sizes == [14 + 20 + 3008]  # one IPv4 datagram: ICMP header + 3000 bytes
    else:
        assert len(sizes) == 3 and max(sizes) <= 1514, sizes
        assert sum(n - 34 for n in sizes) == 3008  # the same bytes, in three fragments


def _pump(pa, pb, poll, timeout: float) -> None:
    """The slow Python forwarding loop: recv_burst on one port, send on the
    other, until poll() (a Popen's) returns an exit status or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and poll() is None:
        for src, dst in ((pa, pb), (pb, pa)):
            frames = src.recv_burst(64)
            if frames:
                dst.send([f for _, f in frames])


def _two_hosts(bed):
    ns1, a1 = bed.wire("a", 1)
    ns2, b1 = bed.wire("b", 2)
    return ns1, a1, ns2, b1


def _serve(bed, ns2, size: int):
    d = tempfile.mkdtemp(prefix="mosafp")
    bed.callback(shutil.rmtree, d, True)
    data = random.Random(3).randbytes(size)
    with open(os.path.join(d, "blob"), "wb") as fh:
        fh.write(data)
    port = 8099
    bed.popen(
        ns2,
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "198.18.99.2",
        "--directory",
        d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 10
    while time.monotonic() < end:
        out = sh("ip", "netns", "exec", ns2, "ss", "-Hltn", check=False).stdout
        if f"198.18.99.2:{port}" in out:
            break
        time.sleep(0.05)
    else:
        pytest.fail("http.server did not start")
    return d, data, f"http://198.18.99.2:{port}/blob"


def test_forward_python_loop_ping_and_curl_2mb(bed):
    ns1, a1, ns2, b1 = _two_hosts(bed)
    d, data, url = _serve(bed, ns2, 2 << 20)
    out = os.path.join(d, "got")
    with AfPacketPort(a1) as pa, AfPacketPort(b1) as pb:
        for cmd in (
            ["ping", "-n", "-c", "3", "-i", "0.1", "-w", "5", "198.18.99.2"],
            ["ping", "-6", "-n", "-c", "3", "-i", "0.1", "-w", "5", "2001:db8:99::2"],
        ):
            pr = bed.popen(ns1, *cmd, stdout=subprocess.PIPE, text=True)
            _pump(pa, pb, pr.poll, 8)
            assert pr.wait(timeout=5) == 0, pr.stdout.read()
        cu = bed.popen(
            ns1,
            "curl",
            "-sS",
            "--max-time",
            "30",
            "-o",
            out,
            url,
            stderr=subprocess.PIPE,
            text=True,
        )
        _pump(pa, pb, cu.poll, 35)
        assert cu.wait(timeout=5) == 0, cu.stderr.read()
        sa, sb = pa.stats(), pb.stats()
    with open(out, "rb") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
    assert sa["tx_dropped"] == 0 and sb["tx_dropped"] == 0
    assert sb["rx"] > 1400 and sa["tx"] > 1400  # the download: b1 -> a1


@pytest.mark.parametrize("rx_ring,tx", [("v3", "ring"), ("v3", "sendmmsg"), ("v2", "ring")])
def test_forward_loop_c_curl_2mb(bed, rx_ring, tx):
    """forward_loop (all in C, GIL released) carries a download in a thread."""
    ns1, a1, ns2, b1 = _two_hosts(bed)
    d, data, url = _serve(bed, ns2, 2 << 20)
    out = os.path.join(d, "got")
    with (
        AfPacketPort(a1, rx_ring=rx_ring, tx=tx) as pa,
        AfPacketPort(b1, rx_ring=rx_ring, tx=tx) as pb,
    ):
        res = {}
        th = threading.Thread(target=lambda: res.update(forward_loop(pa, pb, 20.0, idle_exit=1.0)))
        th.start()
        try:
            cu = bed.popen(
                ns1,
                "curl",
                "-sS",
                "--max-time",
                "15",
                "-o",
                out,
                url,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert cu.wait(timeout=20) == 0, cu.stderr.read()
        finally:
            th.join(timeout=25)
        assert not th.is_alive()
        assert pa.poll_ms == 1 and pb.poll_ms == 1  # restored
    with open(out, "rb") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
    assert res["frames_ba"] > 1400 and res["dropped"] == 0, res
