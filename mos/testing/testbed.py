"""A test bed of real hosts: two network namespaces joined through the middlebox's ports.

::

    [ns P-cli] P-c0 ──veth── P-c1 [root ns: middlebox] P-s1 ──veth── P-s0 [ns P-srv]
     198.18.0.1/24                                                 198.18.0.2/24
     2001:db8::1/64                                                2001:db8::2/64

The client and the server share one subnet: the middlebox is a transparent
bump in the wire, so nothing passes between them until something joins
``c1`` and ``s1`` (mos in-line, or `Testbed.bridge` for a baseline). The
middlebox ends stay in the root namespace, UP, promiscuous, with no
addresses (IPv6 off, so the root namespace sends nothing on them). Offloads
are off on all four ends so the wire carries real MTU-sized segments with
real checksums. Only 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 (RFC 3849)
are used, and traffic never leaves the namespaces.

    >>> with Testbed() as tb:                                    # doctest: +SKIP
    ...     with tb.bridge():
    ...         tb.ping(tb.client_ns, tb.server_ip)
    True

Every name starts with a per-run prefix P (``mos`` and five hex digits unless
given) and ends with one of ``-cli -srv -c0 -c1 -s0 -s1 -br``. Tear-down
always runs: on leaving the ``with`` block (also by an exception), at
interpreter exit, and on SIGTERM. `sweep` removes what crashed runs left
behind; a bed whose owning process still runs, or that ``mos testbed up``
made, is left alone unless forced. ``mos testbed up|down`` does the same
from a shell (root needed).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from mos.errors import MosError

__all__ = ["Testbed", "TestbedError", "add_testbed_parser", "available", "sweep"]

CLIENT_IP, SERVER_IP = "198.18.0.1", "198.18.0.2"
CLIENT_IP6, SERVER_IP6 = "2001:db8::1", "2001:db8::2"
PREFIX_LEN = 24  # RFC 2544 198.18.0.0/15, one /24 of it
PREFIX6_LEN = 64  # RFC 3849 2001:db8::/32, one /64 of it
MTU = 1500
OFFLOADS = ("tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off")
NS_SUFFIXES = ("cli", "srv")
LINK_SUFFIXES = ("c0", "c1", "s0", "s1", "br")
STATE_DIR = "/run/mos-testbed"  # one JSON per bed: owner pid and start time, or keep
CMD_TIMEOUT = 15.0  # seconds for any one ip/ethtool command
_PREFIX_RE = re.compile(r"[A-Za-z0-9]{1,12}\Z")


class TestbedError(MosError):
    """A test bed could not be built (the message has the command and its error)."""

    __test__ = False  # not a pytest class


# -- commands ----------------------------------------------------------------------------------


def _run(argv: Sequence[str], check: bool = True, timeout: float = CMD_TIMEOUT
         ) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise TestbedError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{' '.join(argv)}: no answer in {timeout:g} s") from None
    if check and r.returncode != 0:
        raise TestbedError(f"{' '.join(argv)}: {r.stderr.strip() or f'exit {r.returncode}'}")
    return r


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def _netns_names() -> list[str]:
    r = _run(["ip", "-j", "netns", "list"], check=False)
    try:
        return [d["name"] for d in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _link_names() -> list[str]:
    r = _run(["ip", "-j", "link", "show"], check=False)
    try:
        return [d["ifname"] for d in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def _ns_pids(ns: str) -> list[int]:
    r = _run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat, so a reused pid is not taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def available() -> str | None:
    """None when test beds can be built here, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth pairs)"
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install iproute2 ethtool)"
    probe = "mosprobe" + secrets.token_hex(3)
    try:
        _ip("netns", "add", probe)
    except TestbedError as exc:
        return f"'ip netns' does not work here: {exc}"
    try:
        _ip("link", "add", probe + "a", "type", "veth", "peer", "name", probe + "b")
    except TestbedError as exc:
        return f"veth pairs cannot be made here: {exc}"
    finally:
        _ip("link", "del", probe + "a", check=False)
        _ip("netns", "del", probe, check=False)
    return None


# -- the test bed ------------------------------------------------------------------------------


_LIVE: set[Testbed] = set()
_LOCK = threading.RLock()  # re-entered by the SIGTERM handler
_PREV_SIGTERM = None


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess
    # Tear down here, then die of the signal as asked. Raising SystemExit instead
    # would unwind the with-blocks, but a test runner catches it and carries on.
    _teardown_all()
    signal.signal(signum, _PREV_SIGTERM if _PREV_SIGTERM is not None else signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _teardown_all() -> None:
    for tb in list(_LIVE):
        tb.close()


atexit.register(_teardown_all)


class Testbed:
    """Client and server namespaces, with the middlebox ends `c1` and `s1` in the root ns.

    `prefix` names everything (default ``mos`` + 5 random hex digits); `ipv6` also
    gives the hosts 2001:db8::1 and ::2. `keep=True` leaves the bed up when the
    process ends (``mos testbed up``): only `close` or ``mos testbed down`` remove it.
    """

    __test__ = False  # not a pytest class

    def __init__(self, prefix: str | None = None, ipv6: bool = True, keep: bool = False):
        if prefix is None:
            prefix = "mos" + secrets.token_hex(3)[:5]
        if not _PREFIX_RE.match(prefix):
            raise TestbedError(f"prefix {prefix!r}: use 1 to 12 letters and digits")
        self.prefix = prefix
        self.ipv6 = ipv6
        self.keep = keep
        self.client_ns, self.server_ns = f"{prefix}-cli", f"{prefix}-srv"
        self.c0, self.c1, self.s0, self.s1 = (f"{prefix}-{x}" for x in ("c0", "c1", "s0", "s1"))
        self.bridge_name = f"{prefix}-br"
        self.client_ip, self.server_ip = CLIENT_IP, SERVER_IP
        self.client_ip6, self.server_ip6 = CLIENT_IP6, SERVER_IP6
        self._procs: list[subprocess.Popen] = []
        self._up = False

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def names(self) -> dict:
        return {"prefix": self.prefix, "client_ns": self.client_ns, "server_ns": self.server_ns,
                "c0": self.c0, "c1": self.c1, "s0": self.s0, "s1": self.s1,
                "bridge": self.bridge_name, "client_ip": self.client_ip,
                "server_ip": self.server_ip,
                "client_ip6": self.client_ip6 if self.ipv6 else None,
                "server_ip6": self.server_ip6 if self.ipv6 else None}

    def up(self) -> Testbed:
        """Sweep stale beds, then build this one (torn down again if any step fails)."""
        if self._up:
            return self
        sweep()
        if any(n.startswith(self.prefix + "-") for n in _netns_names() + _link_names()):
            raise TestbedError(f"prefix {self.prefix!r} is in use (mos testbed down "
                               f"--prefix {self.prefix})")
        self._write_state()
        with _LOCK:
            _LIVE.add(self)
            self._up = True
            _install_sigterm()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
        hosts = ((self.client_ns, self.c0, self.c1, self.client_ip, self.client_ip6),
                 (self.server_ns, self.s0, self.s1, self.server_ip, self.server_ip6))
        for ns, inner, outer, ip4, ip6 in hosts:
            self._veth(ns, inner, outer)
            _ip("addr", "add", f"{ip4}/{PREFIX_LEN}", "dev", inner, ns=ns)
            if self.ipv6:
                _ip("addr", "add", f"{ip6}/{PREFIX6_LEN}", "dev", inner, "nodad", ns=ns)
            _ip("link", "set", inner, "up", ns=ns)
        # both ends of each veth are up: wait (bounded) for the carrier
        deadline = time.monotonic() + 5
        while True:
            states = [self._operstate(self.c0, self.client_ns),
                      self._operstate(self.s0, self.server_ns)]
            if all(s == "UP" for s in states):
                break
            if time.monotonic() > deadline:
                raise TestbedError(f"veth ends not up after 5 s: {states}")
            time.sleep(0.02)

    @staticmethod
    def _veth(ns: str, inner: str, outer: str) -> None:
        # the inner end is made in its namespace: it never appears in the root ns
        _ip("link", "add", outer, "mtu", str(MTU), "type", "veth",
            "peer", "name", inner, "mtu", str(MTU), "netns", ns)
        # the middlebox end: no addresses, so the root ns sends nothing on it
        _write(_sysctl_path(f"net.ipv6.conf.{outer}.disable_ipv6"), "1")
        _run(["ethtool", "-K", outer, *OFFLOADS])
        _ip("link", "set", outer, "promisc", "on", "up")
        _run(["ip", "netns", "exec", ns, "ethtool", "-K", inner, *OFFLOADS])

    def extra_link(self, tag: str, ns: str, addr4: str) -> str:
        """One more veth: ``{prefix}-{tag}1`` in the root ns (no address, for
        mos) and ``{prefix}-{tag}0`` in namespace ``ns`` with ``addr4``
        (198.18.0.0/15 only), e.g. an end host's own link beside the
        monitored pair.  It goes with the bed.  Returns the root-side name."""
        import ipaddress
        if ipaddress.ip_interface(addr4).ip not in ipaddress.ip_network("198.18.0.0/15"):
            raise TestbedError(f"{addr4}: test addresses are in 198.18.0.0/15")
        self._check_ns(ns)
        outer, inner = f"{self.prefix}-{tag}1", f"{self.prefix}-{tag}0"
        self._veth(ns, inner, outer)
        _ip("addr", "add", addr4, "dev", inner, ns=ns)
        _ip("link", "set", inner, "up", ns=ns)
        deadline = time.monotonic() + 5
        while self._operstate(inner, ns) != "UP":
            if time.monotonic() > deadline:
                raise TestbedError(f"{inner} not up after 5 s")
            time.sleep(0.02)
        return outer

    @staticmethod
    def _operstate(dev: str, ns: str) -> str:
        r = _ip("-j", "link", "show", dev, ns=ns, check=False)
        try:
            return json.loads(r.stdout)[0].get("operstate", "?")
        except (ValueError, IndexError):
            return "?"

    def close(self) -> None:
        """Kill what it started, delete links and namespaces; safe to call twice."""
        with _LOCK:
            if not self._up:
                return
            self._up = False
            _LIVE.discard(self)
            _restore_sigterm()
        for p in self._procs:
            _kill_group(p)
        self._procs.clear()
        _remove(self.prefix)

    def _write_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        pid = os.getpid()
        state = {"pid": None if self.keep else pid,
                 "start": None if self.keep else _start_time(pid), "keep": self.keep}
        with open(os.path.join(STATE_DIR, self.prefix + ".json"), "w") as fh:
            json.dump(state, fh)

    # -- running programs in a namespace -------------------------------------------------------

    def run_in(self, ns: str, argv: Sequence[str], timeout: float = 30.0,
               **kw) -> subprocess.CompletedProcess:
        """`subprocess.run` of `argv` in namespace `ns` (output captured as text by default)."""
        self._check_ns(ns)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("check", False)
        full = ["ip", "netns", "exec", ns, *argv]
        return subprocess.run(full, timeout=timeout, **kw)  # noqa: PLW1510 - check is in kw

    def popen_in(self, ns: str, argv: Sequence[str], lifetime: float = 300.0,
                 **kw) -> subprocess.Popen:
        """Start `argv` in namespace `ns`; it is killed after `lifetime` seconds at the
        latest (by coreutils ``timeout``, so even if this process dies) and at `close`."""
        self._check_ns(ns)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        guard = ["timeout", "--kill-after=2", f"{lifetime:g}"] if shutil.which("timeout") else []
        p = subprocess.Popen(["ip", "netns", "exec", ns, *guard, *argv], **kw)
        self._procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> int | None:
        """Terminate a process from `popen_in` (then kill it); its exit status."""
        _kill_group(p, timeout)
        if p in self._procs:
            self._procs.remove(p)
        return p.returncode

    def _check_ns(self, ns: str) -> None:
        if ns not in (self.client_ns, self.server_ns):
            raise TestbedError(f"{ns!r} is not a namespace of this bed "
                               f"({self.client_ns}, {self.server_ns})")
        if not self._up:
            raise TestbedError(f"test bed {self.prefix} is not up")

    def ping(self, ns: str, addr: str, count: int = 1, wait: float = 2.0,
             tool: str | None = None) -> bool:
        """True if `addr` answers an ICMP echo from `ns` within `wait` s (per echo).

        Uses iputils ``ping`` when installed, else a raw-socket Python one
        (`tool` = "ping" or "python" forces either)."""
        tool = tool or ("ping" if shutil.which("ping") else "python")
        if tool == "ping":
            argv = ["ping", "-n", "-q", "-c", str(count), "-W", f"{wait:g}", addr]
            if ":" in addr:
                argv.insert(1, "-6")
        else:
            argv = [sys.executable, "-c", _PING_PY, addr, str(count), str(wait)]
        r = self.run_in(ns, argv, timeout=count * (wait + 1) + 5)
        return r.returncode == 0

    # -- a baseline without mos ----------------------------------------------------------------

    @contextlib.contextmanager
    def bridge(self) -> Iterator[str]:
        """Join c1 and s1 with a Linux bridge (STP off, no addresses); yields its name."""
        br = self.bridge_name
        try:
            _ip("link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _write(_sysctl_path(f"net.ipv6.conf.{br}.disable_ipv6"), "1")
            for dev in (self.c1, self.s1):
                _ip("link", "set", dev, "master", br)
            _ip("link", "set", br, "up")
            deadline = time.monotonic() + 5
            while not self._bridge_forwarding():
                if time.monotonic() > deadline:
                    raise TestbedError(f"bridge {br}: ports not forwarding after 5 s")
                time.sleep(0.02)
            yield br
        finally:
            _ip("link", "del", br, check=False)

    def _bridge_forwarding(self) -> bool:
        r = _run(["bridge", "-j", "link", "show"], check=False)
        try:
            states = {d["ifname"]: d.get("state") for d in json.loads(r.stdout or "[]")}
        except (ValueError, KeyError, TypeError):
            return True  # no JSON from this bridge tool: trust forward_delay 0
        return states.get(self.c1) == "forwarding" and states.get(self.s1) == "forwarding"


def _write(path: str, value: str) -> None:
    """Write a /proc/sys file; a missing one (IPv6 off in this kernel) is fine."""
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TestbedError(f"{path}: {exc.strerror}") from None


def _kill_group(p: subprocess.Popen, timeout: float = 3.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it; reap."""
    if p.poll() is None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                p.send_signal(sig)
            try:
                p.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    for f in (p.stdout, p.stderr, p.stdin):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def _install_sigterm() -> None:
    global _PREV_SIGTERM
    if _PREV_SIGTERM is not None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _PREV_SIGTERM = signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm() -> None:
    global _PREV_SIGTERM
    if _LIVE or _PREV_SIGTERM is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _PREV_SIGTERM)
    _PREV_SIGTERM = None


# -- sweeping ----------------------------------------------------------------------------------


def _bed_prefix(name: str, prefix: str, exact: bool) -> str | None:
    """The bed prefix of one of our names, or None when the name is not ours."""
    base, dash, suffix = name.rpartition("-")
    if not dash or suffix not in NS_SUFFIXES + LINK_SUFFIXES or not _PREFIX_RE.match(base):
        return None
    if exact:
        return base if base == prefix else None
    return base if base.startswith(prefix) else None


def _owner_alive(bed: str) -> bool:
    """A bed kept by `mos testbed up`, or whose owning process runs, is live."""
    try:
        with open(os.path.join(STATE_DIR, bed + ".json")) as fh:
            st = json.load(fh)
    except (OSError, ValueError):
        return False
    if st.get("keep"):
        return True
    pid = st.get("pid")
    if not isinstance(pid, int):
        return False
    start = _start_time(pid)
    return start is not None and start == st.get("start")


def _remove(bed: str) -> list[str]:
    """Delete everything of one bed; the names that were there."""
    nss = [n for n in _netns_names() if _bed_prefix(n, bed, True)]
    links = [n for n in _link_names() if _bed_prefix(n, bed, True)]
    for ns in nss:  # processes left in our namespaces: ours, by pid
        for pid in _ns_pids(ns):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for link in sorted(links, key=lambda n: not n.endswith("-br")):  # bridge first
        _ip("link", "del", link, check=False)
    for ns in nss:
        _ip("netns", "del", ns, check=False)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(STATE_DIR, bed + ".json"))
    # namespaces die asynchronously: wait (bounded) until the kernel has let go
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(_bed_prefix(n, bed, True) for n in _netns_names() + _link_names()):
            break
        time.sleep(0.05)
    return nss + links


def sweep(prefix: str = "mos", force: bool = False, exact: bool = False) -> list[str]:
    """Remove test beds whose names start with `prefix` (exactly `prefix` if `exact`) and
    whose owner is gone; `force` removes live and kept ones too, except this process's
    own open beds. Returns the names removed."""
    own = {tb.prefix for tb in _LIVE}
    beds = {b for n in _netns_names() + _link_names()
            if (b := _bed_prefix(n, prefix, exact)) is not None}
    try:
        states = [f[:-5] for f in os.listdir(STATE_DIR) if f.endswith(".json")]
    except OSError:
        states = []
    removed: list[str] = []
    for bed in sorted(beds):
        if bed in own or (not force and _owner_alive(bed)):
            continue
        removed += _remove(bed)
    for bed in states:  # state files of beds that are gone
        if bed not in beds and bed not in own and (exact and bed == prefix or
                                                   not exact and bed.startswith(prefix)):
            with contextlib.suppress(OSError):
                if force or not _owner_alive(bed):
                    os.unlink(os.path.join(STATE_DIR, bed + ".json"))
    return removed


# -- a pure-Python ping, for machines without iputils -----------------------------------------

_PING_PY = r"""
import os, select, socket, struct, sys, time
addr, count, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in addr
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    req, rep = 128, 129  # RFC 4443 4.1, 4.2; the kernel fills the checksum
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    req, rep = 8, 0  # RFC 792
ident = os.getpid() & 0xFFFF
def csum(b):
    b += b"\0" * (len(b) & 1)
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
got = 0
for seq in range(count):
    body = struct.pack("!HH", ident, seq) + b"mos-testbed-ping"
    msg = struct.pack("!BBH", req, 0, 0) + body
    if not v6:
        msg = struct.pack("!BBH", req, 0, csum(msg)) + body
    s.sendto(msg, (addr, 0))
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        pkt, src = s.recvfrom(2048)
        if not v6:
            pkt = pkt[(pkt[0] & 15) * 4:]
        if len(pkt) >= 8 and pkt[0] == rep and struct.unpack("!HH", pkt[4:8]) == (ident, seq):
            got += 1
            break
sys.exit(0 if got else 1)
"""


# -- command line ------------------------------------------------------------------------------


def cmd_testbed_up(args) -> int:
    if os.geteuid() != 0:
        raise TestbedError("mos testbed up needs root")
    tb = Testbed(prefix=args.prefix, ipv6=not args.no_ipv6, keep=True)
    tb.up()
    with _LOCK:  # kept: leave it up when this process exits
        _LIVE.discard(tb)
        _restore_sigterm()
    print(json.dumps(tb.names()))
    return 0


def cmd_testbed_down(args) -> int:
    if os.geteuid() != 0:
        raise TestbedError("mos testbed down needs root")
    if args.prefix:
        removed = sweep(args.prefix, force=True, exact=True)
    else:
        removed = sweep("mos", force=True)
    print(json.dumps({"removed": removed}))
    return 0


def add_testbed_parser(subparsers) -> argparse.ArgumentParser:
    """``mos testbed up|down``: add to the `mos` command's subparsers."""
    t = subparsers.add_parser("testbed", help="build or remove the client/server namespaces "
                                              "of the test bed (root)")
    sub = t.add_subparsers(dest="testbed_cmd", required=True)
    up = sub.add_parser("up", help="build a test bed, print its names as JSON, leave it up")
    up.add_argument("--prefix", help="name prefix, 1-12 letters and digits "
                                     "(default: mos + 5 random hex digits)")
    up.add_argument("--no-ipv6", action="store_true", help="IPv4 addresses only")
    up.set_defaults(func=cmd_testbed_up)
    down = sub.add_parser("down", help="remove a test bed (default: every mos* one)")
    down.add_argument("--prefix", help="remove only the bed with this prefix")
    down.set_defaults(func=cmd_testbed_down)
    return t
