"""DPDK port: a DPDK ethdev (physical NIC or --vdev) behind native/port.h.

    >>> from mos.ports.dpdk import DpdkPort
    >>> eal = ["--no-huge", "-m", "1024", "--no-pci", "-l", "0",
    ...        "--vdev=net_af_packet0,iface=veth1", "--vdev=net_af_packet1,iface=veth2"]
    >>> with DpdkPort(0, eal) as a, DpdkPort(1, eal) as b:   # doctest: +SKIP
    ...     handle, rx, rx_done, tx = a.c_port()

The EAL (DPDK's runtime) starts once per process, with the eal_args of the
first port; later ports must pass the same eal_args. Unless the args name a
--file-prefix or --in-memory, mos adds ``--file-prefix mos<pid>`` so that
processes never share DPDK state, and removes that runtime directory at exit.
DPDK 22.11 refuses --in-memory together with --no-huge; mos then passes
--no-shconf instead, which is what --in-memory amounts to without hugepages.
The EAL pins the calling thread to the first lcore of ``-l``.

With ``queues=N`` (one worker thread per queue), both directions of a flow
must reach one queue.  A device with RSS hashes with a symmetric key; a
device without (net_af_packet, whose kernel fanout rolls flows over to other
queues under load) gets software steering in the shim: each queue's rx hands
frames of other queues' flows to them through rings (native/dpdk_shim.h).
A net_af_packet vdev needs ``qpairs=N``: eal_args_for_queues() adds it,
and a deeper kernel ring (``framecnt``) so that its fanout's rollover, which
reorders a flow, stays rare.

The compiled part (mos.ports._dpdk_cffi, native/dpdk/) is built only when
libdpdk was found at build time; otherwise DpdkPort raises MosError saying so.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import re
import shlex
import shutil
import socket
from collections.abc import Sequence

from mos.errors import ConfigError, MosError

UNAVAILABLE = (
    "the dpdk driver is unavailable: libdpdk was not found when mos was built "
    "(apt-get install libdpdk-dev, then reinstall mos)"
)

try:
    from mos.ports._dpdk_cffi import ffi, lib
except ModuleNotFoundError:
    ffi = lib = None
    _why_unavailable = UNAVAILABLE
except ImportError as e:  # built, but libdpdk's shared libraries are gone
    ffi = lib = None
    _why_unavailable = (
        f"the dpdk driver is unavailable: mos.ports._dpdk_cffi does not load ({e}); "
        "install DPDK's runtime libraries (apt-get install dpdk) or rebuild mos"
    )
else:
    _why_unavailable = ""

__all__ = ["UNAVAILABLE", "DpdkPort", "available", "cleanup", "eal_args_for_queues",
           "pin_worker"]

_ERRLEN = 512

# EAL state for this process
_eal_args: tuple[str, ...] | None = None  # as the first DpdkPort gave them
_eal_argv_keep: list = []  # the EAL may keep pointers into argv: never freed
_own_runtime_dir = ""  # set when mos chose the file prefix: removed at exit
_eal_cleaned = False  # DPDK cannot start twice in one process
_cpus_before_eal: frozenset[int] = frozenset()  # the EAL pins the calling thread
_open_ports: dict[int, DpdkPort] = {}


def available() -> tuple[bool, str]:
    """(True, "") when the DPDK driver can be used, else (False, the reason)."""
    return (lib is not None, _why_unavailable)


def _require_lib():
    if lib is None:
        raise MosError(_why_unavailable)
    return lib


def _normalize_eal_args(eal_args: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(eal_args, str):
        eal_args = shlex.split(eal_args)
    args = tuple(eal_args)
    for i, a in enumerate(args):
        if not isinstance(a, str):
            raise ConfigError(f"eal_args[{i}]: {a!r} is not a string")
    return args


def _check_vdev_interfaces(args: Sequence[str]) -> None:
    """An af_packet/pcap vdev on a missing interface only logs at EAL start (the
    port is then absent): name the argument and the interface instead."""
    for i, a in enumerate(args):
        spec = a[len("--vdev=") :] if a.startswith("--vdev=") else None
        if spec is None and i > 0 and args[i - 1] == "--vdev":
            spec = a
        if not spec or not spec.startswith(("net_af_packet", "net_pcap", "eth_af_packet")):
            continue
        for kv in spec.split(",")[1:]:
            key, _, value = kv.partition("=")
            if key in ("iface", "rx_iface", "tx_iface", "rx_iface_in") and value:
                try:
                    socket.if_nametoindex(value)
                except OSError:
                    raise ConfigError(
                        f"eal_args[{i}]: {a!r}: there is no network interface {value!r} "
                        "(in this network namespace)"
                    ) from None


_AF_PACKET_VDEVS = ("net_af_packet", "eth_af_packet")
# net_af_packet's kernel ring holds 512 frames by default.  Its queues share a
# fanout group with ROLLOVER: a queue whose ring is 3/4 full hands its big
# flows' next frames to another queue, so a worker that stalls a moment
# reorders them (steering keeps a flow on one worker, not in order); a flow
# reordered past its end leaves orphans.  A deeper ring makes that rare.
_STEER_FRAMECNT = 4096


def eal_args_for_queues(eal_args: Sequence[str] | str, queues: int) -> list[str]:
    """eal_args with ``qpairs=QUEUES`` added to every net_af_packet vdev that
    names none: each worker drives its own rx/tx queue pair; with several
    queues, also ``framecnt=4096`` unless given (see _STEER_FRAMECNT).
    ConfigError for a vdev whose qpairs differs: with fewer, workers would
    lack a queue; with more, the kernel fanout would feed sockets no worker
    reads."""
    args = list(_normalize_eal_args(eal_args))
    for i, a in enumerate(args):
        if a.startswith("--vdev="):
            prefix, spec = "--vdev=", a[len("--vdev="):]
        elif i > 0 and args[i - 1] == "--vdev":
            prefix, spec = "", a
        else:
            continue
        if not spec.startswith(_AF_PACKET_VDEVS):
            continue
        opts = [kv.partition("=") for kv in spec.split(",")[1:]]
        given = [v for k, _, v in opts if k == "qpairs"]
        if given and given[-1] != str(queues):
            raise ConfigError(
                f"eal_args[{i}]: {a!r} has qpairs={given[-1]}, but workers is {queues}: each "
                f"worker needs its own rx/tx queue pair (give qpairs={queues}, or leave "
                "qpairs out and mos adds it)")
        if not given:
            spec += f",qpairs={queues}"
        if queues > 1 and not any(k == "framecnt" for k, _, _ in opts):
            spec += f",framecnt={_STEER_FRAMECNT}"
        args[i] = prefix + spec
    return args


def _has_option(args: Sequence[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


def _sweep_stale_runtime_dirs() -> None:
    """Remove /var/run/dpdk/mos<pid> left by mos processes that were killed."""
    base = "/var/run/dpdk" if os.geteuid() == 0 else None
    if not base or not os.path.isdir(base):
        return
    for name in os.listdir(base):
        m = re.fullmatch(r"mos(\d+)", name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _init_eal(eal_args: Sequence[str] | str) -> None:
    global _eal_args, _own_runtime_dir, _cpus_before_eal
    L = _require_lib()
    args = _normalize_eal_args(eal_args)
    if _eal_cleaned:
        raise MosError(
            "the DPDK EAL of this process was stopped (mos.ports.dpdk.cleanup) "
            "and cannot start again: DPDK allows one EAL per process"
        )
    if _eal_args is not None:
        if args != _eal_args:
            raise ConfigError(
                f"eal_args: the DPDK EAL of this process already runs with {list(_eal_args)}; "
                f"it cannot start again with {list(args)} (pass the same eal_args to every "
                "DpdkPort, listing every --vdev there)"
            )
        return
    _check_vdev_interfaces(args)
    full = list(args)
    if _has_option(full, "--no-huge") and "--in-memory" in full:
        # DPDK 22.11 refuses the pair (--no-huge implies legacy memory, which
        # --in-memory rejects); without hugepages --in-memory only means "no
        # shared config files", which is --no-shconf
        full = ["--no-shconf" if a == "--in-memory" else a for a in full]
    chose_prefix = not (_has_option(full, "--file-prefix") or _has_option(full, "--in-memory"))
    if chose_prefix:
        _sweep_stale_runtime_dirs()
        full += ["--file-prefix", f"mos{os.getpid()}"]
    _cpus_before_eal = frozenset(os.sched_getaffinity(0))
    keep = [ffi.new("char[]", a.encode()) for a in ["mos", *full]]
    argv = ffi.new("char *[]", keep)
    err = ffi.new("char[]", _ERRLEN)
    if L.mos_dpdk_init(len(keep), argv, err, _ERRLEN) != 0:
        if chose_prefix:  # the EAL may have made its folder before failing
            shutil.rmtree(f"/var/run/dpdk/mos{os.getpid()}", ignore_errors=True)
        raise MosError(
            f"DPDK EAL init failed: {ffi.string(err).decode(errors='replace')}; "
            f"eal_args: {list(full)} (DPDK printed the details on stderr)"
        )
    _eal_argv_keep.extend([keep, argv])
    _eal_args = args
    if chose_prefix:
        _own_runtime_dir = ffi.string(L.mos_dpdk_runtime_dir()).decode()
    atexit.register(cleanup)
    # a multiprocessing child leaves by os._exit (no atexit): it runs these instead
    multiprocessing.util.Finalize(None, cleanup, exitpriority=0)


def pin_worker(index: int, workers: int) -> None:
    """Place the calling worker thread (one of `workers`, not an EAL lcore).

    rte_eal_init pins the thread that calls it to the main lcore's CPU, and
    threads started from it afterwards inherit that: every worker would share
    one CPU.  With an lcore per worker (``-l 0,1`` for two), worker i runs on
    lcore i's CPU (one worker: the main lcore's, as before); with fewer, on
    the CPUs the process had before the EAL started."""
    if lib is not None and lib.mos_dpdk_lcore_cpu(workers - 1) >= 0:
        os.sched_setaffinity(0, {lib.mos_dpdk_lcore_cpu(index)})  # 0: this thread only
    elif _cpus_before_eal:
        os.sched_setaffinity(0, _cpus_before_eal)


def cleanup() -> None:
    """Close every open DpdkPort and stop the EAL (also runs at exit).

    DPDK cannot start again in this process afterwards."""
    global _own_runtime_dir, _eal_cleaned
    for port in list(_open_ports.values()):
        port.close()
    if lib is None or not lib.mos_dpdk_initialized():
        return
    lib.mos_dpdk_cleanup()
    _eal_cleaned = True
    if _own_runtime_dir and os.path.basename(_own_runtime_dir) == f"mos{os.getpid()}":
        shutil.rmtree(_own_runtime_dir, ignore_errors=True)
    _own_runtime_dir = ""


class DpdkPort:
    """One DPDK ethdev port: rx/tx queue pairs (one by default), promiscuous, started.

    port_id   the ethdev port number (vdevs and NICs in probe order: 0, 1, ...)
    eal_args  EAL arguments (a list, or one string split like a shell), e.g.
              ["--no-huge", "-m", "1024", "--no-pci", "-l", "0",
               "--vdev=net_af_packet0,iface=veth1"]; the same for every port
    nb_desc   rx and tx ring descriptors (adjusted to the device's limits)
    queues    rx/tx queue pairs, one per worker thread; flows are kept whole by
              symmetric RSS, or by software steering on a device without RSS
              (``steering`` is then true)
    """

    def __init__(self, port_id: int, eal_args: Sequence[str] | str, nb_desc: int = 1024,
                 queues: int = 1):
        if not isinstance(port_id, int) or not 0 <= port_id < 65536:
            raise ConfigError(f"port_id: {port_id!r} is not a port number (0..65535)")
        if not isinstance(nb_desc, int) or not 1 <= nb_desc <= 32768:
            raise ConfigError(f"nb_desc: {nb_desc!r} is out of range (1..32768)")
        if not isinstance(queues, int) or not 1 <= queues <= 64:
            raise ConfigError(f"queues: {queues!r} is out of range (1..64)")
        _init_eal(eal_args)
        err = ffi.new("char[]", _ERRLEN)
        h = lib.mos_dpdk_port_open_mq(port_id, queues, nb_desc, err, _ERRLEN)
        if h == ffi.NULL:
            raise MosError(ffi.string(err).decode(errors="replace"))
        self.port_id = port_id
        self.queues = queues
        self._h = h
        self._frames = ffi.new("mos_frame_t[]", 64)
        self._stats = ffi.new("mos_port_stats_t *")
        self._steer = ffi.new("mos_dpdk_steer_stats_t *")
        self.steering = bool(lib.mos_dpdk_steer_stats(h, self._steer))
        _open_ports[port_id] = self

    def _handle(self):
        if self._h is None:
            raise MosError(f"DpdkPort({self.port_id}) is closed")
        return self._h

    def c_port(self, queue: int = 0) -> tuple[int, int, int, int]:
        """(handle, rx, rx_done, tx) as addresses for a C forwarding loop (native/port.h),
        for one rx/tx queue pair (one worker thread per queue)."""
        if not 0 <= queue < self.queues:
            raise ConfigError(f"queue {queue} of DpdkPort({self.port_id}): it has {self.queues}")
        return (int(ffi.cast("uintptr_t", lib.mos_dpdk_queue(self._handle(), queue))),
                *_C_FUNCS)

    def queue_stats(self, queue: int) -> dict[str, int]:
        """Counters of one queue, as stats() (which gives queue 0's)."""
        if not 0 <= queue < self.queues:
            raise ConfigError(f"queue {queue} of DpdkPort({self.port_id}): it has {self.queues}")
        return self._read_stats(lib.mos_dpdk_queue(self._handle(), queue))

    @property
    def handle(self):
        """The shim handle as a cffi pointer (for lib.mos_dpdk_* calls)."""
        return self._handle()

    def stats(self) -> dict[str, int]:
        """Queue 0's counters: rx, rx_bytes (frames the device gave this queue), tx,
        tx_bytes, tx_dropped, rx_dropped (the device's imissed + rx_nombuf, and
        steering drops), and the steering counters: steered (handed to other
        queues), steer_taken (taken from them), steer_dropped (lost: a ring full,
        or left in one at close)."""
        return self._read_stats(self._handle())

    def _read_stats(self, h) -> dict[str, int]:
        lib.mos_dpdk_stats(h, self._stats)
        lib.mos_dpdk_steer_stats(h, self._steer)
        s, ss = self._stats, self._steer
        return {
            "rx": s.rx,
            "rx_bytes": s.rx_bytes,
            "tx": s.tx,
            "tx_bytes": s.tx_bytes,
            "tx_dropped": s.tx_dropped,
            "rx_dropped": s.rx_dropped,
            "steered": ss.handed,
            "steer_taken": ss.taken,
            "steer_dropped": ss.dropped,
        }

    @property
    def mtu(self) -> int | None:
        """The device's MTU (None when the driver cannot tell)."""
        m = lib.mos_dpdk_mtu(self._handle())
        return m if m > 0 else None

    def flush_steering(self) -> int:
        """Free the frames still in the steering rings (call once no worker runs:
        those handed to a worker that had stopped) and return how many; each is
        counted in steer_dropped and rx_dropped of the queue that handed it."""
        return int(lib.mos_dpdk_steer_flush(self._handle()))

    # slow helpers (a copy per frame): for tests and tools, not for forwarding
    def recv_burst(self, max_frames: int = 64) -> list[bytes]:
        """Frames waiting now (at most max_frames), copied out; [] when none."""
        h = self._handle()
        if max_frames > len(self._frames):
            self._frames = ffi.new("mos_frame_t[]", min(max_frames, lib.MOS_DPDK_BURST_MAX))
        n = lib.mos_dpdk_rx(h, self._frames, max_frames)
        out = [ffi.buffer(self._frames[i].data, self._frames[i].caplen)[:] for i in range(n)]
        lib.mos_dpdk_rx_done(h)
        return out

    def send(self, frames: Sequence[bytes]) -> int:
        """Send copies of frames (whole Ethernet frames); returns how many were queued."""
        h = self._handle()
        if not frames:
            return 0
        bufs = [ffi.from_buffer(f) for f in frames]
        arr = ffi.new("mos_frame_t[]", len(frames))
        for i, b in enumerate(bufs):
            arr[i].data = b
            arr[i].caplen = arr[i].wirelen = len(b)
            arr[i].linktype = 1
        return lib.mos_dpdk_tx(h, arr, len(frames))

    def close(self) -> None:
        """Stop and close the device. Safe to call twice; DPDK releases a closed port, so
        its id cannot be opened again in this process."""
        if self._h is not None:
            lib.mos_dpdk_port_close(self._h)
            self._h = None
            _open_ports.pop(self.port_id, None)

    def __enter__(self) -> DpdkPort:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DpdkPort({self.port_id}{', closed' if self._h is None else ''})"


_C_FUNCS: tuple[int, int, int] = (
    tuple(
        int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
        for name in ("mos_dpdk_rx", "mos_dpdk_rx_done", "mos_dpdk_tx")
    )
    if lib is not None
    else (0, 0, 0)
)
