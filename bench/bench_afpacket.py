"""Forwarding through the AF_PACKET port, against the Linux bridge, same veths, same run.

    sudo python3 bench/bench_afpacket.py              # 200 MB x 3 rounds per mode
    sudo python3 bench/bench_afpacket.py --mb 50 --rounds 1 --python-mb 10

Bed (DESIGN §5), built and removed by this script:

    ns C: a0 198.18.99.1 --veth-- A (root) ==[forwarder]== B (root) --veth-- a0 198.18.99.2 :ns S

Offloads are off on all four ends, so the wire carries MTU-sized frames. One
TCP flow: a Python server in S sends a file from /dev/shm with sendfile(); a
Python client in C receives it with recv_into() and hashes it (BLAKE2b) to
check it arrived byte-identical. Forwarders, per round, in this order:

  bridge       Linux bridge enslaving A and B (the kernel peer)
  mos-v3-ring  mos.ports._afpacket.forward_loop (C, bursts of 64): TPACKET_V3
               rx ring (the default port), TPACKET_V2 tx ring
  mos-v3-mmsg  the same with tx="sendmmsg"
  mos-v2-ring  the same with rx_ring="v2" (per-frame slots, no block retire wait)
  python-loop  recv_burst()/send() in Python (smaller file, --python-mb; 0 skips)

Then a flood (--flood-seconds; 0 skips): a sender in C pushes fixed frames
(64 and 1514 bytes, EtherType 0x88B5, to S's MAC) as fast as an AfPacketPort
tx ring takes them (mos.ports._afpacket.blast, a C loop), for bridge, mos-v3-ring and mos-v2-ring; pkt/s is what
reaches S's a0 (its rx_packets) per second, offered is what the sender queued.

Columns: Gbit/s = file payload bits / client receive time; pkt/s = frames
arriving on A and B (both directions, from /sys/.../statistics) / that time;
ratio = Gbit/s / the bridge's median; cpu = the forwarding process's CPU
time / that time (mos rows only: the bridge works in softirq context).
Medians over --rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mos.ports._afpacket import AfPacketPort, forward_loop

OFFLOADS = ["rx", "tx", "sg", "tso", "gso", "gro"]
PORT = 5201

SERVER = r"""
import socket, sys
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(8)
print("ready", flush=True)
while True:
    c, _ = ls.accept()
    with open(path, "rb") as f:
        c.sendfile(f)
    c.close()
"""

CLIENT = r"""
import hashlib, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
buf = bytearray(1 << 20)
mv = memoryview(buf)
h = hashlib.blake2b()
s = socket.create_connection((host, port), timeout=30)
t = time.monotonic()
n = 0
while True:
    k = s.recv_into(buf)
    if not k:
        break
    n += k
    h.update(mv[:k])
print(n, time.monotonic() - t, h.hexdigest(), flush=True)
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


class Bed(contextlib.ExitStack):
    def __init__(self):
        super().__init__()
        tag = f"mfb{os.getpid() % 10**6}"
        self.nsc, self.nss = f"mosafpb{os.getpid()}_c", f"mosafpb{os.getpid()}_s"
        self.a, self.b = f"{tag}a", f"{tag}b"
        self.br = f"{tag}br"
        self.procs: list[subprocess.Popen] = []

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        return super().__exit__(*exc)

    def build(self) -> Bed:
        for ns, outer, host in ((self.nsc, self.a, 1), (self.nss, self.b, 2)):
            sh("ip", "netns", "add", ns)
            self.callback(sh, "ip", "netns", "del", ns, check=False)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "a0", "netns", ns)
            self.callback(sh, "ip", "link", "del", outer, check=False)
            sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1")
            for off in OFFLOADS:
                sh("ethtool", "-K", outer, off, "off", check=False)
                sh("ip", "netns", "exec", ns, "ethtool", "-K", "a0", off, "off", check=False)
            sh("ip", "-n", ns, "addr", "add", f"198.18.99.{host}/24", "dev", "a0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "a0", "up")
            sh("ip", "link", "set", outer, "up")
        return self

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    @contextlib.contextmanager
    def bridge(self):
        sh("ip", "link", "add", self.br, "type", "bridge", "stp_state", "0")
        try:
            sh("sysctl", "-qw", f"net.ipv6.conf.{self.br}.disable_ipv6=1")
            sh("ip", "link", "set", self.a, "master", self.br)
            sh("ip", "link", "set", self.b, "master", self.br)
            sh("ip", "link", "set", self.br, "up")
            yield
        finally:
            sh("ip", "link", "set", self.a, "nomaster", check=False)
            sh("ip", "link", "set", self.b, "nomaster", check=False)
            sh("ip", "link", "del", self.br, check=False)


def counters(ifs) -> int:
    n = 0
    for i in ifs:
        with open(f"/sys/class/net/{i}/statistics/rx_packets") as f:
            n += int(f.read())
    return n


def transfer(bed: Bed, expect: str, size: int, port: int) -> tuple[float, int]:
    """One download; returns (seconds, frames seen on A and B)."""
    p0 = counters((bed.a, bed.b))
    cl = bed.popen(
        bed.nsc,
        sys.executable,
        "-c",
        CLIENT,
        "198.18.99.2",
        str(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = cl.communicate(timeout=300)
    if cl.returncode != 0:
        raise RuntimeError(f"client failed: {err.strip()[-300:]}")
    n, dt, digest = out.split()
    if int(n) != size or digest != expect:
        raise RuntimeError(f"download differs: {n} bytes of {size}, digest {digest[:16]}...")
    return float(dt), counters((bed.a, bed.b)) - p0


def wait_path(bed: Bed, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = sh(
            "ip",
            "netns",
            "exec",
            bed.nsc,
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "0.3",
            "198.18.99.2",
            check=False,
        )
        if r.returncode == 0:
            return
    raise RuntimeError("no path between the namespaces")


def run_bridge(bed, expect, size, port):
    with bed.bridge():
        wait_path(bed)
        dt, frames = transfer(bed, expect, size, port)
    return {"s": dt, "frames": frames, "cpu": None}


def run_mos(bed, expect, size, port, tx, rx_ring="v3"):
    with (
        AfPacketPort(bed.a, tx=tx, rx_ring=rx_ring) as pa,
        AfPacketPort(bed.b, tx=tx, rx_ring=rx_ring) as pb,
    ):
        stop = bytearray(1)
        res = {}
        th = threading.Thread(target=lambda: res.update(forward_loop(pa, pb, 600.0, stop=stop)))
        th.start()
        try:
            wait_path(bed)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            dt, frames = transfer(bed, expect, size, port)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            stop[0] = 1
            th.join(timeout=10)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        st = (pa.stats(), pb.stats())
    drops = sum(s["tx_dropped"] + s["rx_dropped"] for s in st)
    return {"s": dt, "frames": frames, "cpu": cpu / dt, "drops": drops, "loop": res}


def run_python(bed, expect, size, port):
    with AfPacketPort(bed.a) as pa, AfPacketPort(bed.b) as pb:
        done = threading.Event()
        out = {}

        def client():
            try:
                out["r"] = transfer(bed, expect, size, port)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                out["e"] = e
            done.set()

        th = threading.Thread(target=client)
        # ARP and the handshake need the loop running: start the client, then pump
        th.start()
        end = time.monotonic() + 300
        while not done.is_set() and time.monotonic() < end:
            for src, dst in ((pa, pb), (pb, pa)):
                fr = src.recv_burst(64)
                if fr:
                    dst.send([f for _, f in fr])
        th.join(timeout=10)
    if "e" in out:
        raise out["e"]
    dt, frames = out["r"]
    return {"s": dt, "frames": frames, "cpu": None}


FLOOD = r"""
import sys
sys.path.insert(0, sys.argv[4])
from mos.ports._afpacket import AfPacketPort, blast
dst, size, secs = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
frame = dst + bytes.fromhex("020000000001") + b"\x88\xb5" + bytes(size - 14)
with AfPacketPort("a0", poll_ms=0) as p:
    n, dt = blast(p, frame, secs)
print(n, dt, flush=True)
"""


def ns_rx_packets(ns: str) -> int:
    return int(
        sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/a0/statistics/rx_packets").stdout
    )


def flood(bed: Bed, size: int, secs: float) -> tuple[float, float]:
    """(delivered pkt/s at S, offered pkt/s by the sender)."""
    mac = re.search(
        r"link/ether ([0-9a-f:]+)", sh("ip", "-n", bed.nss, "link", "show", "a0").stdout
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r0 = ns_rx_packets(bed.nss)
    p = bed.popen(
        bed.nsc,
        sys.executable,
        "-c",
        FLOOD,
        mac.group(1).replace(":", ""),
        str(size),
        str(secs),
        root,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = p.communicate(timeout=secs + 30)
    time.sleep(0.05)
    n, dt = out.split()
    return (ns_rx_packets(bed.nss) - r0) / float(dt), int(n) / float(dt)


def flood_bridge(bed, size, secs):
    with bed.bridge():
        wait_path(bed)
        return flood(bed, size, secs)


def flood_mos(bed, size, secs, rx_ring):
    with AfPacketPort(bed.a, rx_ring=rx_ring) as pa, AfPacketPort(bed.b, rx_ring=rx_ring) as pb:
        stop = bytearray(1)
        res = {}
        th = threading.Thread(target=lambda: res.update(forward_loop(pa, pb, 600.0, stop=stop)))
        th.start()
        try:
            wait_path(bed)
            return flood(bed, size, secs)
        finally:
            stop[0] = 1
            th.join(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="file size in MB (default 200)")
    ap.add_argument(
        "--python-mb",
        type=int,
        default=20,
        help="file size for the Python loop row (default 20; 0 skips it)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flood-seconds", type=float, default=2.0)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_afpacket: needs root", file=sys.stderr)
        return 2

    results: dict[str, list[dict]] = {}
    with Bed() as bed:
        bed.build()
        files = {}
        for mb in {args.mb, args.python_mb} - {0}:
            path = f"/dev/shm/mosafp-bench-{os.getpid()}-{mb}"
            bed.callback(lambda p=path: os.path.exists(p) and os.unlink(p))
            data = os.urandom(mb << 20)
            with open(path, "wb") as f:
                f.write(data)
            files[mb] = (path, hashlib.blake2b(data).hexdigest(), len(data))
            del data
        for mb, (path, _, _) in files.items():
            srv = bed.popen(
                bed.nss,
                sys.executable,
                "-c",
                SERVER,
                path,
                "198.18.99.2",
                str(PORT + mb),
                stdout=subprocess.PIPE,
                text=True,
            )
            assert srv.stdout.readline().strip() == "ready"
        modes = [
            ("bridge", args.mb, run_bridge),
            ("mos-v3-ring", args.mb, lambda *a: run_mos(*a, "ring")),
            ("mos-v3-mmsg", args.mb, lambda *a: run_mos(*a, "sendmmsg")),
            ("mos-v2-ring", args.mb, lambda *a: run_mos(*a, "ring", "v2")),
        ]
        if args.python_mb:
            modes.append(("python-loop", args.python_mb, run_python))
        for r in range(args.rounds):
            for name, mb, fn in modes:
                _, expect, size = files[mb]
                res = fn(bed, expect, size, PORT + mb)  # one server per file size
                res["bytes"] = size
                results.setdefault(name, []).append(res)
                print(
                    f"round {r + 1} {name:12s} {size * 8 / res['s'] / 1e9:6.2f} Gbit/s "
                    f"{res['frames'] / res['s']:10.0f} pkt/s",
                    file=sys.stderr,
                    flush=True,
                )
        floods: dict[tuple[str, int], list[tuple[float, float]]] = {}
        if args.flood_seconds > 0:
            fmodes = [
                ("bridge", flood_bridge),
                ("mos-v3-ring", lambda *a: flood_mos(*a, "v3")),
                ("mos-v2-ring", lambda *a: flood_mos(*a, "v2")),
            ]
            for r in range(args.rounds):
                for size in (64, 1514):
                    for name, fn in fmodes:
                        got = fn(bed, size, args.flood_seconds)
                        floods.setdefault((name, size), []).append(got)
                        print(
                            f"round {r + 1} flood {size:4d}B {name:12s} {got[0]:10.0f} pkt/s "
                            f"(offered {got[1]:.0f})",
                            file=sys.stderr,
                            flush=True,
                        )

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(
        f"\nAF_PACKET forwarding, one TCP flow over veth (offloads off), {os.cpu_count()} CPUs "
        f"({cpu}), kernel {platform.release()}, medians of {args.rounds} rounds\n"
    )
    print(f"{'forwarder':12s} {'file':>7s} {'Gbit/s':>7s} {'pkt/s':>10s} {'ratio':>6s} {'cpu':>5s}")
    bridge = statistics.median(x["bytes"] * 8 / x["s"] for x in results["bridge"])
    summary = {}
    for name, runs in results.items():
        g = statistics.median(x["bytes"] * 8 / x["s"] for x in runs)
        pps = statistics.median(x["frames"] / x["s"] for x in runs)
        cpus = [x["cpu"] for x in runs if x["cpu"] is not None]
        c = f"{statistics.median(cpus) * 100:4.0f}%" if cpus else "    -"
        print(
            f"{name:12s} {runs[0]['bytes'] >> 20:5d}MB {g / 1e9:7.2f} {pps:10.0f} "
            f"{g / bridge:6.2f} {c}"
        )
        summary[name] = {"gbit_s": g / 1e9, "pkt_s": pps, "ratio_bridge": g / bridge, "runs": runs}
    if floods:
        print(f"\nflood, one direction, fixed frames, medians of {args.rounds} rounds\n")
        print(
            f"{'forwarder':12s} {'frame':>6s} {'pkt/s':>10s} {'Gbit/s':>7s} {'offered':>10s} "
            f"{'ratio':>6s}"
        )
        for (name, size), runs in floods.items():
            d = statistics.median(x[0] for x in runs)
            o = statistics.median(x[1] for x in runs)
            b = statistics.median(x[0] for x in floods[("bridge", size)])
            print(
                f"{name:12s} {size:5d}B {d:10.0f} {d * size * 8 / 1e9:7.2f} {o:10.0f} {d / b:6.2f}"
            )
            summary[f"flood-{name}-{size}"] = {"pkt_s": d, "offered": o, "ratio_bridge": d / b}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
