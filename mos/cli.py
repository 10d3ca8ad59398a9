"""The `mos` command.

    mos streams CAPTURE [--overlap POLICY] [--midstream] [--checksum verify|ignore|auto]
                        [--timeout S] [--max-flows N] [--write-dir DIR] [--buffer-size N]
                        [--stats]
    mos run CAPTURE --app MODULE [--write OUT.pcap] [--midstream] [--checksum ...]
                                 [--timeout S] [--max-flows N] [--buffer-size N] [--no-progress]
                                 [--on-handler-error log|stop|disable-handler|raise]
    mos run -c CONFIG [--app MODULE] [--max-flows N] [--on-handler-error ...]
    mos demo
    mos serve -c CONFIG --root DIR [--port 80] [--seconds S]
    mos load --config CONFIG URL [-n N] [-c C] [-k] [-s SECONDS]

Exit status: 0 on success, 2 for a bad argument, an unreadable or corrupt
capture (after printing what was read before the fault), an output file
that cannot be written, or a handler that raised with --on-handler-error
stop; 130 when interrupted (SIGINT).  The app's finish() and the counters
come on every one of these ways out.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import io
import ipaddress
import json
import os
import sys
import tempfile
import time
from typing import Optional, TextIO

import mos
from mos.errors import CaptureError, HandlerError, MosError, OutputError
from mos.runtime.apps import load_app
from mos.tcp import overlap as overlap_names

STREAMS_BUFFER = 8 << 20


def _config(args, **extra) -> mos.Config:
    if getattr(args, "max_flows", None) is not None:
        extra["max_flows"] = args.max_flows
    if getattr(args, "memcap", None) is not None:
        extra["reassembly_memcap"] = args.memcap
    return mos.Config(overlap=args.overlap, midstream=args.midstream, checksum=args.checksum,
                      tcp_timeout=args.timeout, **extra)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer in 1..4294967295")
    return v


def _size(text: str) -> int:
    """A byte count: 1048576, or with a suffix k, m, g (powers of 1024)."""
    t = text.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    try:
        v = int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count (e.g. 268435456 or 256m)")
    return v


def _common(p: argparse.ArgumentParser, capture_optional: bool = False) -> None:
    if capture_optional:
        p.add_argument("capture", nargs="?", help="pcap or pcapng file")
    else:
        p.add_argument("capture", help="pcap or pcapng file")
    p.add_argument("--overlap", choices=overlap_names.NAMES, default="first", metavar="POLICY",
                   help="which bytes win when retransmissions overlap: first, last, or an OS's "
                        "(bsd, linux, windows, ...; default: first)")
    p.add_argument("--midstream", action="store_true",
                   help="also track flows whose handshake was not captured")
    p.add_argument("--checksum", choices=("verify", "ignore", "auto"), default="auto",
                   help="checksum policy (default: auto, i.e. ignore if >10%% of the first "
                        "1000 TCP packets fail, as with offload)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="idle timeout of a flow in seconds of capture time (default: 30)")
    p.add_argument("--max-flows", type=_positive, metavar="N",
                   help="live flows kept; beyond, one is evicted (the oldest embryonic flow "
                        f"first) and counted (default: {mos.Config().max_flows})")
    p.add_argument("--memcap", type=_size, metavar="BYTES",
                   help="bytes all receive buffers together may hold (stream.reassembly.memcap); "
                        "a segment beyond it is not stored and is counted (default: "
                        f"{mos.Config().reassembly_memcap}; 0: no cap)")


def _file_name(ip: str, port: int) -> str:
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return ".".join(f"{int(o):03d}" for o in ip.split(".")) + f".{port:05d}"
    return a.exploded.replace(":", "") + f".{port:05d}"


class _Records:
    """Writes each flow's two JSON lines in flow id order with bounded memory.

    A record whose id is the next to write goes out at once (flows mostly end
    in the order they started, evictions always do); the others wait in
    memory, and every SPILL of them go to a sorted temporary file, merged
    with the rest at the end.  So a run with a million flows holds at most
    SPILL records, not one per flow until exit."""

    SPILL = 20_000

    def __init__(self, out: TextIO):
        self.out = out
        self.next_id = 1
        self.pending: dict[int, str] = {}  # id -> "c2s\ts2c" (JSON never holds a raw tab)
        self.runs: list = []
        #: the reader went away (`mos streams ... | head`): nothing more is written
        self.closed = False

    def add(self, fid: int, c2s: str, s2c: str) -> None:
        if self.closed:
            return
        try:
            self._add(fid, c2s, s2c)
        except BrokenPipeError:
            self._close()

    def _close(self) -> None:
        self.closed = True
        self.pending.clear()
        # the interpreter's last flush of stdout would fail again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        finally:
            os.close(devnull)

    def _add(self, fid: int, c2s: str, s2c: str) -> None:
        if fid == self.next_id:
            self.out.write(c2s + "\n" + s2c + "\n")
            self.next_id += 1
            pending = self.pending
            while self.next_id in pending:
                a, b = pending.pop(self.next_id).split("\t")
                self.out.write(a + "\n" + b + "\n")
                self.next_id += 1
            return
        self.pending[fid] = c2s + "\t" + s2c
        if len(self.pending) >= self.SPILL:
            run = tempfile.TemporaryFile("w+", encoding="utf-8")
            for k in sorted(self.pending):
                run.write(f"{k}\t{self.pending[k]}\n")
            run.seek(0)
            self.runs.append(run)
            self.pending.clear()

    def finish(self) -> None:
        try:
            self._finish()
        except BrokenPipeError:
            self._close()
        for r in self.runs:
            r.close()
        self.runs.clear()
        self.pending.clear()

    def _finish(self) -> None:
        if self.closed:
            return

        def read(run):
            for line in run:
                k, a, b = line.rstrip("\n").split("\t")
                yield int(k), a, b

        mem = ((k, *self.pending[k].split("\t")) for k in sorted(self.pending))
        for _k, a, b in heapq.merge(mem, *(read(r) for r in self.runs), key=lambda t: t[0]):
            self.out.write(a + "\n" + b + "\n")
        self.out.flush()


class _Streams:
    """Writes one record per flow direction at CONN_END."""

    def __init__(self, write_dir: Optional[str], overlap: str = "first",
                 out: Optional[TextIO] = None):
        self.records = _Records(out if out is not None else sys.stdout)
        self.write_dir = write_dir
        self._used: dict[str, int] = {}  # file name -> flows written under it so far
        # with 'last', held bytes can still be replaced until the receiver
        # acknowledges them: write only acknowledged bytes before the end
        self._final_only_acked = overlap == "last"

    def attach(self, eng: mos.Engine) -> None:
        # the digests need no kept bytes: without --write-dir nothing is read
        mon = eng.attach(mos.Monitor(name="streams", reads=bool(self.write_dir)))
        mon.on(mos.Event.CONN_END, self.on_end, side=mos.Side.CLIENT)
        if self.write_dir:
            mon.on(mos.Event.CONN_NEW_DATA, self.on_data)

    def _path(self, flow, side) -> str:
        """tcpflow's name for the direction; a later flow of the same 4-tuple
        (port reuse, or picked up again after a timeout) gets `c2`, `c3`, ...
        appended, so no flow's bytes overwrite another's."""
        if side == mos.Side.SERVER:  # the server received it: client -> server
            name = (_file_name(flow.client_ip, flow.client_port) + "-" +
                    _file_name(flow.server_ip, flow.server_port))
        else:
            name = (_file_name(flow.server_ip, flow.server_port) + "-" +
                    _file_name(flow.client_ip, flow.client_port))
        n = self._used.get(name, 0) + 1
        self._used[name] = n
        return os.path.join(self.write_dir, name if n == 1 else f"{name}c{n}")

    def on_data(self, flow, side, event, final: bool = False) -> None:
        if flow.uctx is None:
            flow.uctx = {}
        while True:
            n = -1
            if self._final_only_acked and not final:
                n = flow.acked(side) - flow.read_offset(side)
                if n <= 0:
                    break
            data = flow.peek(side, n)
            if not data:
                break
            path = flow.uctx.get(side)
            if path is None:
                path = flow.uctx[side] = self._path(flow, side)
                mode = "wb"
            else:
                mode = "ab"
            with open(path, mode) as fh:
                fh.write(data)

    def on_end(self, flow, side, event) -> None:
        if self.records.closed and not self.write_dir:
            return
        if self.write_dir:
            for s in (mos.Side.CLIENT, mos.Side.SERVER):
                self.on_data(flow, s, event, final=True)
        c2s, s2c = flow.streams_record()
        self.records.add(flow.id, c2s, s2c)


def cmd_streams(args) -> int:
    if args.write_dir:
        os.makedirs(args.write_dir, exist_ok=True)
    eng = mos.Engine(_config(args, digest=True, buffer_size=args.buffer_size))
    st = _Streams(args.write_dir, args.overlap)
    st.attach(eng)
    rc = 0
    try:
        stats = eng.run(args.capture)
    except CaptureError as exc:
        eng.close()
        print(f"mos: error: {exc}", file=sys.stderr)
        rc = 2
        stats = None
    st.records.finish()
    _notes(eng.counters(), args.capture if rc == 0 else None, eng.config)
    if stats is not None and args.stats:
        print(json.dumps(stats.as_dict()), file=sys.stderr)
    return rc


def _notes(c: dict, path: Optional[str] = None, config: Optional[mos.Config] = None) -> None:
    if path is not None and c["frames"] == 0:
        print(f"mos: note: {path}: no frames", file=sys.stderr)
    evicted = c["ended"]["evict"]
    if evicted:
        emb = c.get("evicted_embryonic", 0)
        limits = ""
        if config is not None:
            limits = f" (max_flows {config.max_flows}, max_embryonic {config.max_embryonic})"
        print(f"mos: note: {evicted} flows evicted, {emb} of them embryonic (handshake not "
              f"complete){limits}", file=sys.stderr)
    ra = c.get("reassembly") or {}
    if ra.get("refused_segments"):
        cap = f" (memcap {config.reassembly_memcap})" if config is not None else ""
        print(f"mos: note: reassembly memcap reached: {ra['refused_segments']} segments, "
              f"{ra['refused_bytes']} bytes not stored{cap}; peak {ra['peak']} bytes",
              file=sys.stderr)
    skipped = {k: c[k] for k in ("truncated", "malformed", "unsupported", "bad_checksum") if c[k]}
    if skipped:
        print("mos: note: frames skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items()),
              file=sys.stderr)


def cmd_run(args) -> int:
    if getattr(args, "config", None):
        if args.capture:
            print("mos: error: give a CAPTURE or -c CONFIG, not both", file=sys.stderr)
            return 2
        if getattr(args, "write", None):
            print("mos: error: --write goes with a CAPTURE; in settings a pcap port "
                  "takes options: {write: OUT.pcap}", file=sys.stderr)
            return 2
        from mos.runtime.workers import run_settings
        from mos.settings import load_settings
        settings = load_settings(args.config)
        if args.max_flows is not None:  # the command line wins over monitor.max_flows
            settings = dataclasses.replace(
                settings, monitor=settings.monitor.replace(max_flows=args.max_flows))
        if args.memcap is not None:
            settings = dataclasses.replace(
                settings, monitor=settings.monitor.replace(reassembly_memcap=args.memcap))
        if args.on_handler_error:
            settings = dataclasses.replace(settings, monitor=settings.monitor.replace(
                on_handler_error=args.on_handler_error))
        return run_settings(settings, app_spec=args.app or settings.app,
                            status=not args.no_progress, engine_type=mos.Engine)
    if not args.capture:
        print("mos: error: nothing to run: give a CAPTURE or -c CONFIG", file=sys.stderr)
        return 2
    app = load_app(args.app) if args.app else None
    if app is not None and not hasattr(app, "attach"):
        print(f"mos: error: --app {args.app!r} has no attach(engine) function", file=sys.stderr)
        return 2
    eng = mos.Engine(_config(args, buffer_size=args.buffer_size,
                             on_handler_error=getattr(args, "on_handler_error", None) or "log"))
    if app is not None:
        app.attach(eng)
    progress = None
    bar = None
    show = sys.stderr.isatty() and not args.no_progress
    if show:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                       console=_stderr_console())
        task = bar.add_task(os.path.basename(args.capture), total=os.path.getsize(args.capture))
        bar.start()

        def progress(off, size):
            bar.update(task, completed=off)
    rc = 0
    unexpected = None
    t0 = time.perf_counter()
    try:
        stats = eng.run(args.capture, progress=progress, write=getattr(args, "write", None))
    except BaseException as exc:
        # every way out: the flows still end (CONN_END), the app's finish()
        # runs and the summary is printed below
        stats = None
        if isinstance(exc, KeyboardInterrupt):
            rc, err = 130, "interrupted"
        elif isinstance(exc, (CaptureError, OutputError, HandlerError)):
            rc, err = 2, exc
        else:  # on_handler_error raise, or a bug: its traceback after the summary
            rc, err, unexpected = 2, None, exc
        try:
            eng.close()
        except Exception as exc2:  # a handler under 'raise' while closing
            print(f"mos: error while closing: {type(exc2).__name__}: {exc2}", file=sys.stderr)
    finally:
        if bar is not None:
            bar.stop()
    if rc and err is not None:
        print(f"mos: error: {err}", file=sys.stderr)
    c = eng.counters()
    if stats is None:
        stats = mos.RunStats(packets=c["frames"], bytes=c["bytes"], flows=c["flows_created"],
                             events=c["events"], handler_calls=c["handler_calls"],
                             seconds=time.perf_counter() - t0, counters=c,
                             handler_errors=c["handler_errors"],
                             handler_errors_by_handler=eng.handler_errors())
    if app is not None and hasattr(app, "finish"):
        app.finish(eng, stats)
    _summary(stats)
    _notes(c, None, eng.config)
    if unexpected is not None:
        raise unexpected
    return rc


def _stderr_console():
    from rich.console import Console
    return Console(stderr=True)


def _summary(stats: mos.RunStats) -> None:
    line = (f"{stats.packets} packets, {stats.flows} flows, {stats.events} events, "
            f"{stats.handler_calls} handler calls in {stats.seconds:.3f} s "
            f"({stats.pps:,.0f} packets/s)")
    if stats.handler_errors:
        line += f", {stats.handler_errors} handler errors"
    print(f"mos: {line}", file=sys.stderr)
    if stats.handler_errors:
        by = ", ".join(f"{name} {n}" for name, n in sorted(stats.handler_errors_by_handler.items()))
        print(f"mos: handler errors: {by}", file=sys.stderr)


def cmd_demo(args) -> int:
    """The main job on the shipped capture: streams, then per-flow statistics."""
    cap = mos.sample_capture()
    print(f"# mos streams {cap}")
    ns = argparse.Namespace(capture=cap, overlap="first", midstream=False, checksum="auto",
                            timeout=30.0, write_dir=None, buffer_size=STREAMS_BUFFER, stats=False,
                            max_flows=None, memcap=None)
    rc = cmd_streams(ns)
    print(f"\n# mos run {cap} --app middleboxes.midstat")
    ns = argparse.Namespace(capture=cap, overlap="first", midstream=False, checksum="auto",
                            timeout=30.0, app="middleboxes.midstat", no_progress=True, config=None,
                            buffer_size=mos.Config().buffer_size, max_flows=None, memcap=None)
    return rc or cmd_run(ns)


def _plugin_commands(sub) -> None:
    """Subcommands that applications add (`mos ids`): entry points of group
    "mos.commands", each a function add_parser(subparsers)."""
    from importlib.metadata import entry_points
    for ep in sorted(entry_points(group="mos.commands"), key=lambda e: e.name):
        try:
            add = ep.load()
        except Exception as exc:  # a broken plugin must not take the other commands down
            print(f"mos: note: command {ep.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        add(sub)


def cmd_load(args) -> int:
    """mos load: ab's job from mos's own stack; ab's report, then one JSON line."""
    from mos.endhost import load
    from mos.endhost.contexts import run_workers
    from mos.errors import ConfigError
    from mos.settings import load_settings
    if args.requests < 1 or args.concurrency < 1:
        raise ConfigError("-n and -c must be at least 1")
    try:
        load._parse_url(args.url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = load_settings(args.config)
    n = settings.workers if settings.mode == "endhost" else 1

    def share(total, i):
        return total // n + (1 if i < total % n else 0)

    def work(ctx, i):
        if not share(args.requests, i):
            return load.Result()
        return load.run(ctx, args.url, share(args.requests, i),
                        max(1, share(args.concurrency, i)), args.keepalive,
                        timeout=args.timeout)
    res = load.Result.merged(run_workers(settings, work))
    print(res.report(args.url, args.concurrency))
    print(json.dumps({"complete": res.complete, "failed": res.failed, "non2xx": res.non2xx,
                      "seconds": round(res.seconds, 3), "bodies": res.bodies,
                      "latencies_ms": [round(x * 1000, 1) for x in res.latencies[:1000]],
                      "tcp": res.tcp}))
    return 0 if not res.failed else 1


def cmd_serve(args) -> int:
    """mos serve: load the endhost settings, open the port, serve until told
    to stop; one JSON line of counters at the end, whatever the way out."""
    import signal
    from mos.errors import ConfigError
    from mos.settings import load_settings
    settings = load_settings(args.config)
    if settings.mode != "endhost":
        raise settings.error("mode", f"mos serve needs mode: endhost, not {settings.mode}")
    if not os.path.isdir(args.root):
        raise ConfigError(f"--root {args.root}: not a directory")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not in 1..65535")
    from mos.endhost.contexts import open_ports, run_workers
    from mos.endhost.httpd import Server
    eh = settings.endhost
    spec = settings.ports[0]
    ports = open_ports(settings)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))

    def work(ctx, worker):
        server = Server(ctx, args.root, args.port)
        for sig in (signal.SIGINT, signal.SIGTERM):   # (again in a forked worker)
            signal.signal(sig, lambda *_: stop.append(1))
        t0 = time.monotonic()
        try:
            server.run(until=lambda: bool(stop), seconds=args.seconds)
        except KeyboardInterrupt:
            pass
        return {"served": server.served, "errors": server.errors,
                "seconds": round(time.monotonic() - t0, 3), "stack": ctx.stack.stats()}
    addrs = ", ".join(a for _, a in eh.addresses)
    where = getattr(spec, "iface", None) or f"dpdk port {spec.port_id}"
    print(f"mos serve: {args.root} on {addrs} port {args.port} ({where}"
          f"{f', {settings.workers} workers' if settings.workers > 1 else ''})", file=sys.stderr,
          flush=True)
    t0 = time.monotonic()
    results = []
    try:
        results = run_workers(settings, work, ports)
    finally:
        out = {"served": sum(r["served"] for r in results),
               "errors": sum(r["errors"] for r in results),
               "seconds": round(time.monotonic() - t0, 3)}
        if len(results) == 1:
            out["stack"] = results[0]["stack"]
        elif results:
            out["workers"] = results
        print(json.dumps(out), flush=True)
    return 0


#: the commands mos itself defines; any other word may be a plugin's
BUILTIN = ("streams", "run", "demo", "serve", "load")


def build_parser(extras: bool = True) -> argparse.ArgumentParser:
    """The command line; extras=False leaves out the plugins' commands and
    the test bed's (importing them costs a tenth of a second: a
    `mos streams` over a small capture does not want it)."""
    p = argparse.ArgumentParser(prog="mos", description="Stateful TCP monitoring on a compiled dual stack.")
    p.add_argument("--version", action="version", version=f"mos {mos.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("streams", help="reassemble every flow direction; one JSON line each")
    _common(s)
    s.add_argument("--write-dir", metavar="DIR", help="also write each direction to a file, as tcpflow does")
    s.add_argument("--buffer-size", type=int, default=STREAMS_BUFFER,
                   help="receive buffer per direction, bytes: it holds out-of-order data until "
                        f"the holes fill (default: {STREAMS_BUFFER})")
    s.add_argument("--stats", action="store_true", help="print run statistics as JSON on stderr")
    s.set_defaults(func=cmd_streams)
    r = sub.add_parser("run", help="run a handler module over a capture, or on live ports (-c)")
    _common(r, capture_optional=True)
    r.add_argument("-c", "--config", metavar="CONFIG",
                   help="YAML settings: in-line or passive ports (AF_PACKET, DPDK); runs until "
                        "SIGINT/SIGTERM and prints one JSON line of counters")
    r.add_argument("--app", metavar="MODULE", help="module or .py file with attach(engine) [and finish(engine, stats)]")
    r.add_argument("--write", metavar="OUT.pcap",
                   help="run as an in-line box over the capture and write what it forwards "
                        "(drops, edits and injected frames applied) to OUT.pcap")
    r.add_argument("--on-handler-error", choices=("log", "stop", "disable-handler", "raise"),
                   help="what a handler's exception does: log (count it, log one line "
                        "naming handler, event, flow and packet, go on; the default), stop "
                        "(end the run with that line; finish() still runs), disable-handler "
                        "(log it, unregister that handler), raise (a traceback); overrides "
                        "monitor.on_handler_error of -c CONFIG")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--buffer-size", type=int, default=mos.Config().buffer_size,
                   help="receive buffer per side of each flow, bytes")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("demo", help="run streams and midstat on the shipped sample capture")
    d.set_defaults(func=cmd_demo)
    v = sub.add_parser("serve", help="a static-file HTTP/1.1 server on mos's own TCP/IP stack "
                                     "(mode: endhost)")
    v.add_argument("-c", "--config", metavar="CONFIG", required=True,
                   help="YAML settings with mode: endhost (its port and the addresses the "
                        "stack owns on it)")
    v.add_argument("--root", metavar="DIR", required=True, help="directory of the files served")
    v.add_argument("--port", type=int, default=80, help="TCP port, IPv4 and IPv6 (default: 80)")
    v.add_argument("--seconds", type=float, default=None,
                   help="stop after this long (default: until SIGINT or SIGTERM)")
    v.set_defaults(func=cmd_serve)
    ld = sub.add_parser("load", help="an HTTP load client on mos's own TCP/IP stack, ab's "
                                     "flags and report (mode: endhost)")
    ld.add_argument("--config", "-C", metavar="CONFIG", required=True,
                    help="YAML settings with mode: endhost")
    ld.add_argument("url", metavar="URL", help="http://HOST[:PORT]/PATH")
    ld.add_argument("-n", type=int, default=1, dest="requests", help="requests (default 1)")
    ld.add_argument("-c", type=int, default=1, dest="concurrency",
                    help="requests at once (default 1)")
    ld.add_argument("-k", action="store_true", dest="keepalive",
                    help="HTTP/1.1 keep-alive (else a connection per request)")
    ld.add_argument("-s", type=float, default=30.0, dest="timeout",
                    help="seconds each request may take (default 30)")
    ld.set_defaults(func=cmd_load)
    if not extras:
        return p
    _plugin_commands(sub)
    try:
        from mos.testing.testbed import add_testbed_parser
    except ImportError:
        pass
    else:
        add_testbed_parser(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    first = next((w for w in words if not w.startswith("-")), None)
    lean = first in BUILTIN and not any(w in ("-h", "--help") for w in words)
    args = build_parser(extras=not lean).parse_args(argv)
    try:
        return args.func(args)
    except MosError as exc:
        print(f"mos: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
