"""The port factory: one settings ``ports:`` entry -> a port object.

Every port has ``c_port() -> (handle, rx, rx_done, tx)`` (native/port.h),
or a fifth item, the handle tx takes when it differs from rx's (a capture
read and written by two files).  Drivers: ``afpacket`` (mos.ports._afpacket),
``dpdk`` (mos.ports.dpdk), ``pcap`` (CaptureReader, with an optional
PcapWriter: mos.runtime._loop).
"""

from __future__ import annotations

from typing import Optional

from mos.errors import CaptureError, ConfigError, MosError, OutputError

__all__ = ["CapturePort", "open_port", "path_mtu", "eal_args"]


class CapturePort:
    """A ``driver: pcap`` port: rx reads ``path``; with ``options: {write:
    OUT}`` tx writes what leaves by this port to OUT (pcap, the input's link
    type), else frames sent to it are counted as not queued."""

    def __init__(self, path: str, write: Optional[str] = None):
        from mos.runtime._loop import CaptureReader, PcapWriter
        self.reader = CaptureReader(path)
        self.writer = None
        try:
            if write is not None:
                self.writer = PcapWriter(write, self.reader.linktype)
        except Exception:
            self.reader.close()
            raise

    def c_port(self):
        h, rx, rx_done, tx = self.reader.c_port()
        if self.writer is None:
            return (h, rx, rx_done, tx)
        wh, _, _, wtx = self.writer.c_port()
        return (h, rx, rx_done, wtx, wh)

    def stats(self) -> dict:
        return {}

    def error(self) -> Optional[str]:
        """Why reading stopped early, or None."""
        return self.reader.error

    def close(self) -> None:
        """Close both files; OutputError if a write failed."""
        self.reader.close()
        if self.writer is not None:
            w, self.writer = self.writer, None
            w.close()


_AFPACKET_OPTIONS = ("block_bytes", "poll_ms", "retire_ms", "rx_ring", "tx")


def open_port(spec, settings, fanout_group: Optional[int]):
    """The port object for one `ports:` entry.  What only opening the port
    finds out (no such interface, an option the driver does not take, no
    such capture file or DPDK port) is a ConfigError naming the settings
    file, the line and the key (`Settings.error`)."""
    err = settings.port_error
    if spec.driver == "afpacket":
        from mos.ports._afpacket import AfPacketPort
        opts = dict(spec.options or {})
        unknown = sorted(set(opts) - set(_AFPACKET_OPTIONS))
        if unknown:
            raise err(spec, f"options.{unknown[0]}", f"unknown afpacket option {unknown[0]!r} "
                      f"(known: {', '.join(_AFPACKET_OPTIONS)})", "options")
        # in-line: per-frame TPACKET_V2 slots by default, since a V3 block
        # reaches user space only when full or after its 1 ms retire timer,
        # which adds up to 1 ms per hop to every round trip (measured in
        # bench/bench_inline.py); passive taps keep V3's batching.
        # In-line, a reassembled datagram could not be sent on: no fanout
        # defrag; a passive tap must also see what the host sends.
        opts.setdefault("rx_ring", "v2" if settings.mode == "inline" else "v3")
        try:
            return AfPacketPort(spec.iface, fanout_group=fanout_group,
                                ring_bytes=spec.rx_ring_mb << 20,
                                fanout_defrag=settings.mode != "inline",
                                see_outgoing=settings.mode == "passive", **opts)
        except FileNotFoundError:
            raise err(spec, "iface", f"{spec.iface!r}: no such interface (in this network "
                                     f"namespace)") from None
        except (ValueError, TypeError) as exc:  # an option's value: "rx_ring: 'v9' is not..."
            key, _, why = str(exc).partition(": ")
            if key in opts:
                raise err(spec, f"options.{key}", why) from None
            raise err(spec, "options", str(exc)) from None
    if spec.driver == "dpdk":
        from mos.ports.dpdk import DpdkPort
        try:
            return DpdkPort(spec.port_id, eal_args(settings), queues=settings.workers)
        except ConfigError as exc:  # "eal_args[2]: ...": the EAL arguments of the file
            msg = str(exc)
            if msg.startswith("eal_args"):
                key, _, why = msg.partition(": ")
                raise settings.error("dpdk." + key, why) from None
            raise err(spec, "port_id", msg) from None
        except MosError as exc:
            if "EAL init failed" in str(exc) or "was stopped" in str(exc):
                raise settings.error("dpdk.eal_args", str(exc)) from None
            raise err(spec, "port_id", f"{spec.port_id}: {exc}") from None
    if spec.driver == "pcap":
        opts = dict(spec.options or {})
        unknown = sorted(set(opts) - {"write"})
        if unknown:
            raise err(spec, f"options.{unknown[0]}",
                      f"unknown pcap option {unknown[0]!r} (known: write)", "options")
        write = opts.get("write")
        if write is not None and not isinstance(write, str):
            raise err(spec, "options.write", f"{write!r} is not a file name")
        try:
            return CapturePort(spec.path, write)
        except CaptureError as exc:
            raise err(spec, "path", str(exc)) from None
        except OutputError as exc:
            raise err(spec, "options.write", str(exc)) from None
    raise err(spec, "driver", f"{spec.driver!r} cannot be used in-line")


def eal_args(settings) -> list[str]:
    """The EAL arguments as configured, with qpairs=WORKERS added to each
    net_af_packet vdev that names none: a device needs one rx/tx queue pair
    per worker (flows kept whole by symmetric RSS or software steering: see
    native/dpdk_shim.h)."""
    from mos.ports.dpdk import eal_args_for_queues
    return eal_args_for_queues(settings.dpdk.eal_args, settings.workers)


def path_mtu(ports) -> int:
    """The smallest MTU of the ports (AF_PACKET: the interface's; DPDK: the
    device's), 1500 when none can tell: segments an edit grows are cut to
    fit it."""
    mtus = [getattr(p, "mtu", None) for p in ports]
    return min([m for m in mtus if isinstance(m, int) and 576 <= m <= 65535] or [1500])
