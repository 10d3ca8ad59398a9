"""The end host's contexts from loaded settings (``mode: endhost``): the
port opened, the stack given its addresses and TCP options.  ``mos serve``,
``mos load`` and ``mos.aio`` start here.  Settings come in as an object
(mos.settings sits above this layer)."""

from __future__ import annotations

import os

from mos.errors import MosError
from mos.ports._afpacket import AfPacketPort

from .sockets import Context


def endhost_context(settings):
    """(Context, port, port spec) of loaded settings (mos.settings) with
    ``mode: endhost``: the stack on its one port (AF_PACKET or DPDK), its
    addresses, gateways and TCP options.  Errors name the file, line and
    key, as load-time errors do."""
    if settings.mode != "endhost":
        raise settings.error("mode", f"needs mode: endhost, not {settings.mode}")
    spec = settings.ports[0]
    if len(settings.ports) != 1 or spec.driver not in ("afpacket", "dpdk"):
        raise settings.port_error(spec, "driver", "the end host runs on one afpacket or dpdk "
                                                  "port (several workers come next)")
    if spec.driver == "dpdk":
        from mos.ports.dpdk import DpdkPort
        eal = list(settings.dpdk.eal_args)
        try:
            port = DpdkPort(spec.port_id, eal)
        except MosError as exc:
            raise settings.port_error(spec, "port_id", f"cannot open DPDK port "
                                                       f"{spec.port_id}: {exc}")
        # a net_af_packet vdev answers for its interface's MAC; else a local one
        iface = next((a.split("iface=")[1].split(",")[0] for a in eal
                      if "net_af_packet" in a and "iface=" in a), None)
        mac = f"02:00:00:00:00:{spec.port_id % 256:02x}"
        if iface and os.path.exists(f"/sys/class/net/{iface}/address"):
            with open(f"/sys/class/net/{iface}/address", encoding="ascii") as fh:
                mac = fh.read().strip()
    else:
        try:
            # TPACKET_V2 slots: each frame is seen at once (V3 blocks wait up to
            # retire_ms, a latency every request/response exchange would pay)
            port = AfPacketPort(spec.iface, rx_ring="v2")
            with open(f"/sys/class/net/{spec.iface}/address", encoding="ascii") as fh:
                mac = fh.read().strip()
        except (OSError, MosError) as exc:
            raise settings.port_error(spec, "iface", f"cannot open {spec.iface}: "
                                                     f"{getattr(exc, 'strerror', None) or exc}")
        port.poll_ms = 0     # never waits in rx: an idle context polls its fd (sockets.PortLink)
    eh = settings.endhost
    tcp = {("ts" if k == "timestamps" else k): v for k, v in eh.tcp.items()}
    ctx = Context.on_port(port, mac, *[a for p, a in eh.addresses if p == spec.name],
                          gateway4=eh.gateway4, gateway6=eh.gateway6,
                          max_conns=eh.max_conns, **tcp)
    return ctx, port, spec
