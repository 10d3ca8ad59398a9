"""The end host's contexts from loaded settings (``mode: endhost``): the
port opened, the stack given its addresses and TCP options.  ``mos serve``,
``mos load`` and ``mos.aio`` start here.  Settings come in as an object
(mos.settings sits above this layer)."""

from __future__ import annotations

import os

from mos.errors import MosError
from mos.ports._afpacket import AfPacketPort

from .sockets import Context


def _check(settings):
    if settings.mode != "endhost":
        raise settings.error("mode", f"needs mode: endhost, not {settings.mode}")
    spec = settings.ports[0]
    if len(settings.ports) != 1 or spec.driver not in ("afpacket", "dpdk"):
        raise settings.port_error(spec, "driver", "the end host runs on one afpacket or dpdk "
                                                  "port")
    if settings.workers > 1 and spec.driver != "afpacket":
        raise settings.error("workers", f"end-host workers need an afpacket port; "
                                        f"{spec.name} is {spec.driver}")
    return spec


def _afpacket(settings, spec):
    try:
        # TPACKET_V2 slots: each frame is seen at once (V3 blocks wait up to
        # retire_ms, a latency every request/response exchange would pay)
        port = AfPacketPort(spec.iface, rx_ring="v2")
    except (OSError, MosError) as exc:
        raise settings.port_error(spec, "iface", f"cannot open {spec.iface}: "
                                                 f"{getattr(exc, 'strerror', None) or exc}")
    port.poll_ms = 0     # never waits in rx: an idle context polls its fd (sockets.PortLink)
    return port


def open_ports(settings) -> list:
    """The ports of each worker, opened in worker order: [[port]] for one
    worker; with ``workers: N`` (AF_PACKET), per worker a TCP port in a
    fanout group steered by ports (mos.endhost.steer) and a control port
    for the rest."""
    spec = _check(settings)
    if spec.driver == "dpdk":
        from mos.ports.dpdk import DpdkPort
        try:
            return [[DpdkPort(spec.port_id, list(settings.dpdk.eal_args))]]
        except MosError as exc:
            raise settings.port_error(spec, "port_id", f"cannot open DPDK port "
                                                       f"{spec.port_id}: {exc}")
    if settings.workers == 1:
        return [[_afpacket(settings, spec)]]
    from . import steer
    group = 0x6D00 | (os.getpid() & 0xFF)
    out = []
    for _ in range(settings.workers):
        tcp, ctl = _afpacket(settings, spec), _afpacket(settings, spec)
        steer.steer_tcp(tcp, group)
        steer.control_only(ctl)
        out.append([tcp, ctl])
    return out


def _mac(settings, spec) -> str:
    if spec.driver == "dpdk":
        # a net_af_packet vdev answers for its interface's MAC; else a local one
        eal = list(settings.dpdk.eal_args)
        iface = next((a.split("iface=")[1].split(",")[0] for a in eal
                      if "net_af_packet" in a and "iface=" in a), None)
        if not (iface and os.path.exists(f"/sys/class/net/{iface}/address")):
            return f"02:00:00:00:00:{spec.port_id % 256:02x}"
    else:
        iface = spec.iface
    with open(f"/sys/class/net/{iface}/address", encoding="ascii") as fh:
        return fh.read().strip()


def endhost_context(settings, worker: int = 0, ports=None):
    """(Context, ports, port spec) of loaded settings (mos.settings) with
    ``mode: endhost``: worker ``worker``'s stack on its ports (``ports``
    from open_ports, else opened here for one worker), its addresses,
    gateways and TCP options.  Errors name the file, line and key, as
    load-time errors do."""
    spec = _check(settings)
    if ports is None:
        if settings.workers > 1:
            raise settings.error("workers", "several workers: open their ports in order "
                                            "(open_ports) or use run_workers")
        ports = open_ports(settings)[worker]
    eh = settings.endhost
    tcp = {("ts" if k == "timestamps" else k): v for k, v in eh.tcp.items()}
    ctx = Context.on_port(ports, _mac(settings, spec),
                          *[a for p, a in eh.addresses if p == spec.name],
                          gateway4=eh.gateway4, gateway6=eh.gateway6,
                          max_conns=eh.max_conns, syncookies=eh.syncookies,
                          workers=settings.workers, worker=worker, responder=worker == 0, **tcp)
    return ctx, ports, spec


def run_workers(settings, work, ports=None):
    """Run ``work(ctx, worker) -> picklable result`` on every worker of
    ``settings`` and return their results in worker order.  One worker
    runs here; several are processes forked after all ports are open (so
    fanout members are numbered as the workers), SIGINT and SIGTERM are
    passed on to them, and a worker that dies is reported, not waited for
    forever."""
    import pickle
    import signal
    if ports is None:
        ports = open_ports(settings)
    if len(ports) == 1:
        ctx, _, _ = endhost_context(settings, 0, ports[0])
        try:
            return [work(ctx, 0)]
        finally:
            for p in ports[0]:
                p.close()
    children = []
    for i in range(len(ports)):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:            # the worker
            os.close(r)
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                ctx, _, _ = endhost_context(settings, i, ports[i])
                out = pickle.dumps(("ok", work(ctx, i)))
            except BaseException as exc:  # reported by the parent, with the worker's number
                out = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
                code = 1
            with os.fdopen(w, "wb") as fh:
                fh.write(out)
            os._exit(code)
        os.close(w)
        children.append((pid, r))
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def forward(sig, _frame):
        for pid, _ in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    for s in old:
        signal.signal(s, forward)
    results, errors = [], []
    try:
        for i, (pid, r) in enumerate(children):
            with os.fdopen(r, "rb") as fh:
                data = fh.read()
            os.waitpid(pid, 0)
            kind, value = pickle.loads(data) if data else ("error", "died without a result")
            if kind == "ok":
                results.append(value)
            else:
                errors.append(f"worker {i}: {value}")
                results.append(None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for group in ports:
            for p in group:
                p.close()
    if errors:
        raise MosError("; ".join(errors))
    return results
