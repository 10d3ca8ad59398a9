"""Running mos on ports from a settings file (`mos run -c CONFIG`).

One engine per worker process.  Each worker opens every port of the
settings itself; with several workers the AF_PACKET ports join one fanout
group whose kernel hash is symmetric, so both directions of a flow land on
the same worker (DESIGN 1, rule 3).  A worker forwards until SIGINT or
SIGTERM, then reports its counters; the parent sums them into one JSON line.

Capture ports (driver pcap) run in this process, at the captures' own time,
until every capture has been read.

DPDK runs in one process (one EAL) with a worker thread per rx/tx queue pair
of each port; symmetric RSS, or the shim's software steering on a device
without RSS (net_af_packet), keeps both directions of a flow on one queue.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys

from mos.dualstack._engine import CoreEngine
from mos.errors import ConfigError, MosError
from mos.runtime._loop import run_ports
from mos.runtime.apps import load_app
from mos.runtime.ports import open_port, path_mtu

__all__ = ["run_settings"]


# Empty polls of the rings before an AF_PACKET worker blocks in poll(2)
# (~0.1 ms): a frame that arrives meanwhile skips a wake-up through the
# scheduler.  Measured with bench_inline (ab, 2 x 3 rounds): req/s over
# testpmd's 0.88 / 0.93 blocking at once, 1.04 / 0.98 with 300.
AFPACKET_SPIN = 300


def _peers(settings) -> list[int]:
    index = {p.name: i for i, p in enumerate(settings.ports)}
    peers = [-1] * len(settings.ports)
    if settings.mode == "inline":
        for a, b in settings.forward:
            peers[index[a]] = index[b]
            peers[index[b]] = index[a]
    return peers


def _load_app(spec, settings=None):
    """The worker's app: from a module name or .py path, or made by a
    callable factory (one app per worker, e.g. `mos ids -c`)."""
    if not spec:
        return None
    if callable(spec):
        return spec()
    return load_app(spec, settings)


@contextlib.contextmanager
def _stop_on_signals(then=None):
    """While the block runs, SIGINT and SIGTERM set the yielded flag (and
    call ``then``); the previous handlers come back after it."""
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True
        if then is not None:
            then()

    old = (signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal))
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])


def _bursts(settings) -> list[int]:
    return [p.burst for p in settings.ports]


def _stop_flag() -> list:
    """[False], set to [True] by SIGINT or SIGTERM (a worker's way out)."""
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _worker(settings, app_spec, fanout_group, result_q, status: bool, ready_q=None,
            index: int = 0, turn=None, engine_type=CoreEngine):
    stop = _stop_flag()
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
        eng = _engine(engine_type, settings)
        eng.mtu = path_mtu(ports)
        app = _load_app(app_spec, settings)
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
        error = None
        try:
            counters = run_ports(eng, [p.c_port() for p in ports], _peers(settings),
                                 lambda: stop[0], status=show,
                                 fds=fds if len(fds) == len(ports) else None,
                                 idle_spin=AFPACKET_SPIN, bursts=_bursts(settings))
        except Exception as exc:  # the counters are still reported (and finish() runs)
            error, counters = _one_line(exc), eng.port_counters()
        result_q.put(_finish(eng, app, settings, counters, [p.stats() for p in ports], error))
    except Exception as exc:  # reported by the parent as one line
        # mos's own errors say what and where (a ConfigError: FILE:LINE: KEY: why)
        result_q.put({"error": str(exc) if isinstance(exc, MosError)
                      else f"{type(exc).__name__}: {exc}"})
        if ready_q is not None:
            ready_q.put(-1)
    finally:
        for p in ports:
            p.close()


def _endhost(settings, result_q, ready_q) -> None:
    """The end host beside the monitor (both roles at once): mos's stack
    on its own port, serving ``endhost.serve`` files if set (else it only
    answers ARP, neighbour solicitations, pings, and RSTs), until SIGTERM;
    its counters go on ``result_q``."""
    from mos.endhost.contexts import endhost_context
    from mos.endhost.httpd import Server
    stop = _stop_flag()
    ports = []
    try:
        ctx, ports, _ = endhost_context(settings)
        eh = settings.endhost
        server = None
        if eh.serve_root is not None:
            if not os.path.isdir(eh.serve_root):
                raise settings.error("endhost.serve.root",
                                     f"{eh.serve_root!r} is not a directory")
            server = Server(ctx, eh.serve_root, eh.serve_port)
        ready_q.put(os.getpid())
        while not stop[0]:
            if server is not None:
                server.step(0.05)
            else:
                ctx.wait_for(lambda: stop[0], 0.05)
        out = {"served": server.served if server else 0,
               "errors": server.errors if server else 0, "stack": ctx.stack.stats()}
        result_q.put({"endhost": out})
    except Exception as exc:  # reported by the parent as one line
        result_q.put({"error": str(exc) if isinstance(exc, MosError)
                      else f"endhost: {type(exc).__name__}: {exc}"})
        ready_q.put(-1)
    finally:
        for p in ports:
            p.close()


def _split_roles(settings):
    """(monitor settings, end-host settings or None): with an ``endhost``
    section beside inline or passive ports, its port leaves the monitor."""
    import dataclasses
    eh = settings.endhost
    if eh is None or settings.mode == "endhost":
        return settings, None
    mon = dataclasses.replace(settings, endhost=None,
                              ports=tuple(p for p in settings.ports if p.name != eh.port))
    host = dataclasses.replace(settings, mode="endhost", forward=(), workers=1,
                               ports=tuple(p for p in settings.ports if p.name == eh.port))
    return mon, host


def _engine(engine_type, settings):
    """A worker's engine; on_handler_error 'auto' is 'log' for the whole
    run, its end (flows closed, the app's finish) included."""
    eng = engine_type(settings.engine_config())
    if settings.engine_config().on_handler_error == "auto":
        eng.on_handler_error = "log"
    return eng


def _one_line(exc: BaseException) -> str:
    """An exception as the run's last error line (a HandlerError already is one)."""
    if isinstance(exc, MosError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _finish(eng, app, settings, counters, port_stats, error=None) -> dict:
    """End the worker's flows, let the app finish, and report its counters:
    on every way out of the port loop (stopped, a handler's stop policy, an
    error), so ``error`` (the first one) goes along with them."""
    try:
        eng.close()
    except Exception as exc:
        error = error or _one_line(exc)
    if app is not None and hasattr(app, "finish"):
        try:
            app.finish(eng, None)
        except Exception as exc:
            error = error or f"finish: {_one_line(exc)}"
    c = eng.counters()
    out = {"ports": {}, "flows": c["flows_created"], "events": c["events"],
           "handler_calls": c["handler_calls"], "handler_errors": c["handler_errors"],
           "handler_errors_by_handler": eng.handler_errors(),
           "handlers_disabled": eng.disabled_handlers(),
           "packets": c["frames"], "tcp": c["tcp"],
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
    if error:
        out["error"] = error
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


def _thread_worker(settings, app, ports, queue, stop, results, errors, status,
                   engine_type=CoreEngine):
    try:
        from mos.ports.dpdk import pin_worker
        pin_worker(queue, settings.workers)  # else every worker shares the EAL's main lcore
        eng = _engine(engine_type, settings)
        eng.mtu = path_mtu(ports)
        if app is not None:
            app.attach(eng)
        show = _status_printer(settings) if status else None
        error = None
        try:
            counters = run_ports(eng, [p.c_port(queue) for p in ports], _peers(settings),
                                 lambda: stop[0], status=show,
                                 idle_sleep_us=settings.dpdk.idle_sleep,
                                 bursts=_bursts(settings))
        except Exception as exc:  # the run stops; counters reported, finish() runs
            error, counters = _one_line(exc), eng.port_counters()
            stop[0] = True
        results.append(_finish(eng, app, settings, counters,
                               [p.queue_stats(queue) for p in ports], error))
    except Exception as exc:
        errors.append(_one_line(exc))
        stop[0] = True


def _run_threads(settings, app_spec, status, ready, engine_type) -> int:
    import threading
    ports, results, errors = [], [], []
    with _stop_on_signals() as stop:
        try:
            try:
                for spec in settings.ports:
                    ports.append(open_port(spec, settings, None))
                app = _load_app(app_spec, settings)
            except Exception as exc:
                print(f"mos: error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 2
            threads = [threading.Thread(target=_thread_worker, daemon=True,
                                        args=(settings, app, ports, q, stop, results, errors,
                                              status and q == 0, engine_type))
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
            for p in ports:
                p.close()
    return _report(results, errors, status)


def _report(results: list[dict], errors: list[str], status: bool) -> int:
    """The run's last words: one JSON line of counters (from every worker
    that got as far as counting), then the first error if any (exit 2)."""
    if status and sys.stderr.isatty():
        sys.stderr.write("\n")  # end the status line
    counted = [r for r in results if "ports" in r]
    errors = list(errors) + [r["error"] for r in results if r.get("error")]
    if counted:
        total = _sum(counted)
        for r in results:
            if "endhost" in r:
                total["endhost"] = r["endhost"]
        print(json.dumps(total), flush=True)
    if errors:
        print(f"mos: error: {errors[0]}", file=sys.stderr)
        return 2
    return 0


def _sum(results: list[dict]) -> dict:
    total: dict = {"workers": len(results), "ports": {},
                   "worker_flows": [r["flows"] for r in results]}
    for r in results:
        for k in ("flows", "events", "handler_calls", "handler_errors", "packets", "tcp",
                  "non_tcp", "rexmit", "orphans", "rewritten", "rewrite_failed", "split"):
            total[k] = total.get(k, 0) + r[k]
        by = total.setdefault("handler_errors_by_handler", {})
        for k, v in r["handler_errors_by_handler"].items():
            by[k] = by.get(k, 0) + v
        off = total.setdefault("handlers_disabled", [])
        off += [h for h in r["handlers_disabled"] if h not in off]
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


def _run_captures(settings, app_spec, status, ready, engine_type) -> int:
    """In-line over capture ports: one engine in this process, at the
    captures' time; ends when every capture has been read (or on SIGINT)."""
    ports, results, errors = [], [], []
    with _stop_on_signals() as stop:
        try:
            try:
                for spec in settings.ports:
                    ports.append(open_port(spec, settings, None))
                app = _load_app(app_spec, settings)
                eng = _engine(engine_type, settings)
                if app is not None:
                    app.attach(eng)
                if ready is not None:
                    ready()
                error = None
                try:
                    counters = run_ports(eng, [p.c_port() for p in ports], _peers(settings),
                                         lambda: stop[0], wall_time=False,
                                         bursts=_bursts(settings))
                except Exception as exc:  # counters reported, finish() runs
                    error, counters = _one_line(exc), eng.port_counters()
                results.append(_finish(eng, app, settings, counters, [p.stats() for p in ports],
                                       error))
                errors += [e for e in (p.error() for p in ports) if e]
            except MosError as exc:
                errors.append(str(exc))
        finally:
            for p in ports:
                try:
                    p.close()
                except MosError as exc:  # a failed write
                    errors.append(str(exc))
    return _report(results, errors, status)


def run_settings(settings, app_spec=None, status=True, ready=None,
                 engine_type=CoreEngine) -> int:
    """Run until SIGINT/SIGTERM (or, over capture ports, until they are
    read); print one JSON line of final counters.  ``app_spec`` names a
    module or .py file with attach(engine), or is a callable that returns
    such an app for each worker.  ``engine_type`` builds
    each worker's engine from a mos.Config (mos.Engine for the CLI)."""
    drivers = {p.driver for p in settings.ports}
    if "pcap" in drivers:
        if settings.mode == "passive":
            raise ConfigError("a passive run over capture files is `mos run CAPTURE`")
        if drivers != {"pcap"}:
            raise ConfigError("ports: capture (pcap) ports cannot be mixed with live ports: "
                              "a capture's time is its frames', not the wall clock")
        return _run_captures(settings, app_spec, status, ready, engine_type)
    if "dpdk" in drivers:
        # one process (one EAL); a worker thread per queue pair, each with its
        # own engine: the compiled core runs without the GIL
        return _run_threads(settings, app_spec, status, ready, engine_type)
    settings, host = _split_roles(settings)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ready_q = ctx.Queue()
    group = (os.getpid() & 0xFFFF) if settings.workers > 1 else None
    turn = _Turn(ctx)
    procs = [ctx.Process(target=_worker, args=(settings, app_spec, group, q, status and i == 0,
                                                ready_q, i, turn, engine_type), daemon=True)
             for i in range(settings.workers)]
    if host is not None:        # both roles: the end host is one more process
        procs.append(ctx.Process(target=_endhost, args=(host, q, ready_q), daemon=True))
    stop = [False]

    def stop_workers():
        for p in procs:
            if p.pid:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def on_signal(signum, frame):
        stop[0] = True
        stop_workers()

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
                if results[-1].get("error"):  # one worker stopped the run: all stop
                    stop_workers()
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
    return _report(results, [], status)
