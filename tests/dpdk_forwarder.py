"""Forward frames between two net_af_packet vdevs through mos.ports.dpdk.

Each DPDK scenario runs in its own process (the EAL starts once per
process); tests/test_dpdk.py and bench/bench_dpdk.py start this script with
sys.executable.

    python3 tests/dpdk_forwarder.py copy IFACE_A IFACE_B --seconds 30
    python3 tests/dpdk_forwarder.py zerocopy IFACE_A IFACE_B --seconds 30
    python3 tests/dpdk_forwarder.py copy null null --seconds 3   # net_null vdevs
    python3 tests/dpdk_forwarder.py errors
    python3 tests/dpdk_forwarder.py steer

copy      rx on one port, tx (a copy) on the other, both ways, in a Python loop
          over the native/port.h function pointers from DpdkPort.c_port()
zerocopy  the same loop over mos_dpdk_forward (the mbufs themselves move)
slow      the same with the test helpers recv_burst() and send() (bytes objects)
errors    the messages for a bad EAL argument and a missing port id
steer     software flow steering on net_ring0 (no RSS; its tx queue q loops
          back to rx queue q): where frames sent on queue 0 come out

The forwarders print "READY" once both ports run, forward until SIGTERM,
SIGINT or --seconds, then print one JSON line: per-port stats, loop turns
and the seconds spent forwarding.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mos.errors import MosError
from mos.ports import dpdk

TURNS = 256  # loop turns between looks at the clock and the stop flag


def eal_args(a: str, b: str, vdev_opts: str = "", lcore: int = 0) -> list[str]:
    """EAL args for two net_af_packet vdevs on interfaces a and b (ports 0 and 1);
    a == b == "null": two net_null vdevs instead (endless rx, tx discards: no wire).

    No --file-prefix: DpdkPort adds mos<pid> and removes it at exit. (And no
    --in-memory: DPDK 22.11 refuses it with --no-huge, which implies legacy memory.)"""
    opts = f",{vdev_opts}" if vdev_opts else ""
    if a == b == "null":
        vdevs = ["--vdev=net_null0", "--vdev=net_null1"]
    else:
        vdevs = [
            f"--vdev=net_af_packet0,iface={a},qpairs=1{opts}",
            f"--vdev=net_af_packet1,iface={b},qpairs=1{opts}",
        ]
    return [
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "-l",
        str(lcore),
        "--log-level=lib.eal:warning",
        *vdevs,
    ]


def run_errors() -> dict:
    out = {}
    try:
        dpdk.DpdkPort(0, ["--no-huge", "--no-such-eal-option"])
    except MosError as e:
        out["bad_eal_arg"] = str(e)
    # --in-memory with --no-huge: DPDK 22.11 alone refuses the pair, DpdkPort copes
    args = ["--no-huge", "-m", "256", "--no-pci", "--in-memory", "-l", "0", "--vdev=net_null0"]
    try:
        dpdk.DpdkPort(7, args)
    except MosError as e:
        out["bad_port"] = str(e)
    with dpdk.DpdkPort(0, args) as p:
        out["null_port_rx"] = len(p.recv_burst())
        out["runtime_dir"] = dpdk._own_runtime_dir
        try:
            dpdk.DpdkPort(0, args + ["--vdev=net_null1"])
        except MosError as e:
            out["other_eal_args"] = str(e)
    try:
        p.stats()
    except MosError as e:
        out["closed_port"] = str(e)
    try:
        dpdk.DpdkPort(0, args)
    except MosError as e:
        out["reopen"] = str(e)
    return out


def _tcp4(i: int) -> bytes:
    """An Ethernet/IPv4/TCP frame of flow i (headers only; checksums do not matter here)."""
    import struct

    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     bytes([198, 18, i >> 8 & 255, i & 255]), bytes([198, 19, 0, 1]))
    tcp = struct.pack("!HHIIBBHHH", 1024 + i, 80, 0, 0, 0x50, 0x10, 1024, 0, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def run_steer() -> dict:
    """Frames sent on queue 0 of a 2-queue net_ring0 come back on rx queue 0,
    where steering keeps queue 0's flows and hands queue 1's over."""
    args = ["--no-huge", "-m", "512", "--no-pci", "-l", "0", "--log-level=lib.eal:warning",
            "--vdev=net_ring0"]
    ffi, lib = dpdk.ffi, dpdk.lib
    out: dict = {"cpus_before": sorted(os.sched_getaffinity(0))}
    with dpdk.DpdkPort(0, args, queues=2) as p:
        out["steering"] = p.steering
        out["cpus_main"] = sorted(os.sched_getaffinity(0))  # the EAL pinned it to lcore 0

        def placed(index: int, workers: int) -> list[int]:
            got: list = []

            def run() -> None:
                dpdk.pin_worker(index, workers)
                got.extend(sorted(os.sched_getaffinity(0)))

            t = threading.Thread(target=run)
            t.start()
            t.join()
            return got

        # -l 0: one worker stays on lcore 0's CPU; two are not both put there
        out["cpus_workers"] = [placed(0, 1), placed(0, 2), placed(1, 2)]
        q = [lib.mos_dpdk_queue(p.handle, i) for i in range(2)]
        buf = ffi.new("mos_frame_t[]", lib.MOS_DPDK_BURST_MAX)

        def rx(i: int) -> list[bytes]:
            got: list[bytes] = []
            while True:
                n = lib.mos_dpdk_rx(q[i], buf, lib.MOS_DPDK_BURST_MAX)
                got += [ffi.buffer(buf[k].data, buf[k].caplen)[:] for k in range(n)]
                lib.mos_dpdk_rx_done(q[i])
                if not n:
                    return got

        def owner(f: bytes) -> int:
            return lib.mos_dpdk_steer_owner(f, len(f), 2)

        # flows of both queues, an ARP frame and a truncated one (no flow: stay on 0)
        flows = [_tcp4(i) for i in range(400)]
        arp = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)
        frames = flows + [arp, flows[0][:30]]
        out["sent"] = p.send(frames)
        out0, out1 = rx(0), rx(1)
        out["owners"] = [owner(f) for f in frames]
        out["q0"] = [frames.index(f) for f in out0]
        out["q1"] = [frames.index(f) for f in out1]
        out["after_mix"] = [p.queue_stats(0), p.queue_stats(1)]

        # queue 1 does not read: its ring fills, and the rest is dropped and counted
        mine1 = [f for f in flows if owner(f) == 1]
        pushed = 0
        while pushed < 3000:
            pushed += p.send(mine1[: min(len(mine1), 3000 - pushed)])
            rx(0)
        out["pushed"] = pushed
        out["after_full"] = [p.queue_stats(0), p.queue_stats(1)]
        out["drained"] = len(rx(1))
        # what is still in a ring when the workers stop is freed and counted
        p.send(mine1[:100])
        rx(0)
        out["flushed"] = p.flush_steering()
        out["after_flush"] = [p.queue_stats(0), p.queue_stats(1)]
    return out


def forward(
    mode: str, a: str, b: str, seconds: float, burst: int, vdev_opts: str, lcore: int
) -> dict:
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    args = eal_args(a, b, vdev_opts, lcore)
    with dpdk.DpdkPort(0, args) as pa, dpdk.DpdkPort(1, args) as pb:
        ffi, lib = dpdk.ffi, dpdk.lib
        print("READY", flush=True)
        deadline = time.monotonic() + seconds
        turns = 0
        t0 = time.monotonic()
        if mode == "copy":
            # what an engine does: only the port.h addresses, called through pointers
            ha, rx_a, done_a, tx_a = pa.c_port()
            hb, rx_b, done_b, tx_b = pb.c_port()
            ha, hb = ffi.cast("void *", ha), ffi.cast("void *", hb)
            rx = ffi.cast("int (*)(void *, mos_frame_t *, int)", rx_a)
            done = ffi.cast("void (*)(void *)", done_a)
            tx = ffi.cast("int (*)(void *, const mos_frame_t *, int)", tx_a)
            assert (rx_a, done_a, tx_a) == (rx_b, done_b, tx_b)  # one driver, two handles
            frames = ffi.new("mos_frame_t[]", burst)
            while not stop and time.monotonic() < deadline:
                for _ in range(TURNS):
                    n = rx(ha, frames, burst)
                    if n:
                        tx(hb, frames, n)
                        done(ha)
                    n = rx(hb, frames, burst)
                    if n:
                        tx(ha, frames, n)
                        done(hb)
                turns += TURNS
        elif mode == "slow":
            while not stop and time.monotonic() < deadline:
                for _ in range(TURNS):
                    frames = pa.recv_burst(burst)
                    if frames:
                        pb.send(frames)
                    frames = pb.recv_burst(burst)
                    if frames:
                        pa.send(frames)
                turns += TURNS
        else:
            fwd = lib.mos_dpdk_forward
            ha, hb = pa.handle, pb.handle
            while not stop and time.monotonic() < deadline:
                for _ in range(TURNS):
                    fwd(ha, hb)
                    fwd(hb, ha)
                turns += TURNS
        elapsed = time.monotonic() - t0
        return {"mode": mode, "a": pa.stats(), "b": pb.stats(), "turns": turns, "seconds": elapsed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["copy", "zerocopy", "slow", "errors", "steer"])
    ap.add_argument("a", nargs="?")
    ap.add_argument("b", nargs="?")
    ap.add_argument("--seconds", type=float, default=30.0, help="forward at most this long")
    ap.add_argument("--burst", type=int, default=64, help="rx burst of the copy loop")
    ap.add_argument(
        "--vdev-opts", default="", help="extra net_af_packet options, e.g. framecnt=4096"
    )
    ap.add_argument("--lcore", type=int, default=0, help="the CPU the EAL pins this process to")
    o = ap.parse_args()
    if o.mode == "errors":
        result = run_errors()
    elif o.mode == "steer":
        result = run_steer()
    else:
        if not (o.a and o.b):
            ap.error(f"{o.mode} needs the two interfaces")
        result = forward(o.mode, o.a, o.b, o.seconds, o.burst, o.vdev_opts, o.lcore)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
