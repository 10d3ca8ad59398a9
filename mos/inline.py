"""Running mos on live ports from a settings file (`mos run -c CONFIG`).

One engine per worker process.  Each worker opens every port of the
settings itself; with several workers the AF_PACKET ports join one fanout
group whose kernel hash is symmetric, so both directions of a flow land on
the same worker (DESIGN 1, rule 3).  A worker forwards until SIGINT or
SIGTERM, then reports its counters; the parent sums them into one JSON line.

DPDK runs in one process (one EAL) with a worker thread per rx/tx queue pair
of each port; symmetric RSS, or the shim's software steering on a device
without RSS (net_af_packet), keeps both directions of a flow on one queue.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
from typing import Optional

import mos
from mos.errors import ConfigError

__all__ = ["run_settings", "open_port"]


def open_port(spec, settings, fanout_group: Optional[int]):
    """The port object for one `ports:` entry."""
    if spec.driver == "afpacket":
        from mos.ports._afpacket import AfPacketPort
        opts = dict(spec.options or {})
        unknown = set(opts) - {"rx_ring", "tx", "retire_ms", "block_bytes", "poll_ms"}
        if unknown:
            raise ConfigError(f"ports[{spec.name}].options: unknown afpacket option "
                              f"{sorted(unknown)[0]!r}")
        # in-line: per-frame TPACKET_V2 slots by default, since a V3 block
        # reaches user space only when full or after its 1 ms retire timer,
        # which adds up to 1 ms per hop to every round trip (measured in
        # bench/bench_inline.py); passive taps keep V3's batching.
        # In-line, a reassembled datagram could not be sent on: no fanout
        # defrag; a passive tap must also see what the host sends.
        opts.setdefault("rx_ring", "v2" if settings.mode == "inline" else "v3")
        return AfPacketPort(spec.iface, fanout_group=fanout_group,
                            ring_bytes=spec.rx_ring_mb << 20,
                            fanout_defrag=settings.mode != "inline",
                            see_outgoing=settings.mode == "passive", **opts)
    if spec.driver == "dpdk":
        from mos.ports.dpdk import DpdkPort
        return DpdkPort(spec.port_id, _eal_args(settings), queues=settings.workers)
    raise ConfigError(f"ports: driver {spec.driver!r} cannot be used in-line")


def _eal_args(settings) -> list[str]:
    """The EAL arguments as configured, with qpairs=WORKERS added to each
    net_af_packet vdev that names none: a device needs one rx/tx queue pair
    per worker (flows kept whole by symmetric RSS or software steering: see
    native/dpdk_shim.h)."""
    from mos.ports.dpdk import eal_args_for_queues
    return eal_args_for_queues(settings.dpdk.eal_args, settings.workers)


# Empty polls of the rings before an AF_PACKET worker blocks in poll(2)
# (~0.1 ms): a frame that arrives meanwhile skips a wake-up through the
# scheduler.  Measured with bench_inline (ab, 2 x 3 rounds): req/s over
# testpmd's 0.88 / 0.93 blocking at once, 1.04 / 0.98 with 300.
AFPACKET_SPIN = 300


def _path_mtu(ports) -> int:
    """The smallest MTU of the ports (AF_PACKET: the interface's; DPDK: the
    device's), 1500 when none can tell: segments an edit grows are cut to
    fit it."""
    mtus = [getattr(p, "mtu", None) for p in ports]
    return min([m for m in mtus if isinstance(m, int) and 576 <= m <= 65535] or [1500])


def _peers(settings) -> list[int]:
    index = {p.name: i for i, p in enumerate(settings.ports)}
    peers = [-1] * len(settings.ports)
    if settings.mode == "inline":
        for a, b in settings.forward:
            peers[index[a]] = index[b]
            peers[index[b]] = index[a]
    return peers


def _load_app(spec):
    if not spec:
        return None
    from mos.cli import _load_app
    return _load_app(spec)


def _worker(settings, app_spec, fanout_group, result_q, status: bool, ready_q=None,
            index: int = 0, turn=None):
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ports = []
    try:
        # The kernel maps a flow hash to a group member by join order, and a
        # fanout group belongs to one device: one group per port.  Worker i
        # must be member i of every group, or a flow's two directions (seen
        # on two ports) reach different workers: workers join in turn.
        if turn is not None:
            with turn:
                turn.wait_for(lambda: turn.value == index, timeout=60)
        try:
            for i, spec in enumerate(settings.ports):
                ports.append(open_port(spec, settings,
                                       None if fanout_group is None else fanout_group + i))
        finally:
            if turn is not None:
                with turn:
                    turn.value = index + 1
                    turn.notify_all()
        eng = mos.Engine(settings.engine_config())
        eng.mtu = _path_mtu(ports)
        app = _load_app(app_spec)
        if app is not None:
            app.attach(eng)
        if ready_q is not None:
            ready_q.put(os.getpid())
        show = _status_printer(settings) if status else None
        fds = []
        for p in ports:
            if hasattr(p, "fileno"):  # wait on all sockets at once when idle
                p.poll_ms = 0
                fds.append(p.fileno())
        counters = eng.run_ports([p.c_port() for p in ports], _peers(settings),
                                 lambda: stop[0], status=show,
                                 fds=fds if len(fds) == len(ports) else None,
                                 idle_spin=AFPACKET_SPIN)
        result_q.put(_finish(eng, app, settings, counters, [p.stats() for p in ports]))
    except Exception as exc:  # reported by the parent as one line
        result_q.put({"error": f"{type(exc).__name__}: {exc}"})
        if ready_q is not None:
            ready_q.put(-1)
    finally:
        for p in ports:
            p.close()


def _finish(eng, app, settings, counters, port_stats) -> dict:
    """End the worker's flows, let the app finish, and report its counters."""
    eng.close()
    if app is not None and hasattr(app, "finish"):
        app.finish(eng, None)
    c = eng.counters()
    out = {"ports": {}, "flows": c["flows_created"], "events": c["events"],
           "handler_calls": c["handler_calls"], "packets": c["frames"], "tcp": c["tcp"],
           "non_tcp": c["non_tcp"], "rexmit": c["rexmit"], "orphans": c["orphans"],
           "rewritten": c["rewritten"], "rewrite_failed": c["rewrite_failed"], "split": c["split"],
           "ended": c["ended"], "errors": c["errors"]}
    for spec, pc, st in zip(settings.ports, counters, port_stats):
        out["ports"][spec.name] = {"rx": pc["rx"], "tx": pc["tx"], "dropped": pc["dropped"],
                                   "tx_dropped": pc["tx_dropped"], "injected": pc["injected"],
                                   "split": pc["split"],
                                   "kernel_dropped": st.get("rx_dropped", 0)}
        if "steered" in st:  # DPDK: frames handed to another worker, and those lost doing so
            out["ports"][spec.name].update(steered=st["steered"],
                                           steer_dropped=st["steer_dropped"])
    return out


def _status_printer(settings):
    if not sys.stderr.isatty():
        return None

    def show(eng):
        c = eng.counters()
        pcs = eng.port_counters()
        parts = [f"{s.name} rx {pc['rx']} tx {pc['tx']}" for s, pc in zip(settings.ports, pcs)]
        sys.stderr.write(f"\rmos: {c['flows_live']} flows, {c['events']} events | "
                         + " | ".join(parts) + "   ")
        sys.stderr.flush()
    return show


def _thread_worker(settings, app, ports, queue, stop, results, errors, status):
    try:
        from mos.ports.dpdk import pin_worker
        pin_worker(queue, settings.workers)  # else every worker shares the EAL's main lcore
        eng = mos.Engine(settings.engine_config())
        eng.mtu = _path_mtu(ports)
        if app is not None:
            app.attach(eng)
        show = _status_printer(settings) if status else None
        counters = eng.run_ports([p.c_port(queue) for p in ports], _peers(settings),
                                 lambda: stop[0], status=show,
                                 idle_sleep_us=settings.dpdk.idle_sleep)
        results.append(_finish(eng, app, settings, counters,
                               [p.queue_stats(queue) for p in ports]))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        stop[0] = True


def _run_threads(settings, app_spec, status, ready) -> int:
    import threading
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True

    old = (signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal))
    ports, results, errors = [], [], []
    try:
        try:
            for spec in settings.ports:
                ports.append(open_port(spec, settings, None))
            app = _load_app(app_spec)
        except Exception as exc:
            print(f"mos: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        threads = [threading.Thread(target=_thread_worker, daemon=True,
                                    args=(settings, app, ports, q, stop, results, errors,
                                          status and q == 0))
                   for q in range(settings.workers)]
        for t in threads:
            t.start()
        if ready is not None:
            ready()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
        # frames a worker handed to one that had already stopped are still in
        # the steering rings: lost at shutdown, counted as steering drops
        for spec, p in zip(settings.ports, ports):
            n = p.flush_steering() if hasattr(p, "flush_steering") else 0
            if n and results:
                pc = results[0]["ports"][spec.name]
                pc["kernel_dropped"] += n
                pc["steer_dropped"] += n
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
        for p in ports:
            p.close()
    return _report(results, errors, status)


def _report(results: list[dict], errors: list[str], status: bool) -> int:
    """The run's last words: one error line (exit 2) or one JSON line of counters."""
    if status and sys.stderr.isatty():
        sys.stderr.write("\n")  # end the status line
    if errors:
        print(f"mos: error: {errors[0]}", file=sys.stderr)
        return 2
    print(json.dumps(_sum(results)), flush=True)
    return 0


def _sum(results: list[dict]) -> dict:
    total: dict = {"workers": len(results), "ports": {},
                   "worker_flows": [r["flows"] for r in results]}
    for r in results:
        for k in ("flows", "events", "handler_calls", "packets", "tcp", "non_tcp", "rexmit",
                  "orphans", "rewritten", "rewrite_failed", "split"):
            total[k] = total.get(k, 0) + r[k]
        for name, pc in r["ports"].items():
            agg = total["ports"].setdefault(name, {})
            for k, v in pc.items():
                agg[k] = agg.get(k, 0) + v
        ended = total.setdefault("ended", {})
        for k, v in r["ended"].items():
            ended[k] = ended.get(k, 0) + v
        errs = total.setdefault("errors", {})
        for k, v in r["errors"].items():
            errs[k] = errs.get(k, 0) + v
    return total


class _Turn:
    """A shared counter with a condition: whose turn it is to join."""

    def __init__(self, ctx):
        self._v = ctx.Value("i", 0)
        self._c = ctx.Condition()

    def __enter__(self):
        return self._c.__enter__()

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)

    @property
    def value(self):
        return self._v.value

    @value.setter
    def value(self, v):
        self._v.value = v

    def wait_for(self, pred, timeout):
        return self._c.wait_for(pred, timeout)

    def notify_all(self):
        self._c.notify_all()


def run_settings(settings, app_spec=None, status=True, ready=None) -> int:
    """Run until SIGINT/SIGTERM; print one JSON line of final counters."""
    if settings.mode == "passive" and all(p.driver == "pcap" for p in settings.ports):
        raise ConfigError("a passive run over capture files is `mos run CAPTURE`")
    if any(p.driver == "dpdk" for p in settings.ports):
        # one process (one EAL); a worker thread per queue pair, each with its
        # own engine: the compiled core runs without the GIL
        return _run_threads(settings, app_spec, status, ready)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ready_q = ctx.Queue()
    group = (os.getpid() & 0xFFFF) if settings.workers > 1 else None
    turn = _Turn(ctx)
    procs = [ctx.Process(target=_worker, args=(settings, app_spec, group, q, status and i == 0,
                                                ready_q, i, turn), daemon=True)
             for i in range(settings.workers)]
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True
        for p in procs:
            if p.pid:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    old = (signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal))
    try:
        for p in procs:
            p.start()
        started = [ready_q.get(timeout=60) for _ in procs]
        if ready is not None and all(pid > 0 for pid in started):
            ready()
        results = []
        while len(results) < len(procs):
            try:
                results.append(q.get(timeout=0.5))
            except Exception:
                if not any(p.is_alive() for p in procs) and q.empty():
                    break
        for p in procs:
            p.join(timeout=10)
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
        for p in procs:
            if p.is_alive():
                p.kill()
    return _report(results, [r["error"] for r in results if "error" in r], status)
