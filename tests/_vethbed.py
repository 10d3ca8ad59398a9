"""Two network namespaces joined through a gap a forwarder must bridge.

    client ns: {tag}c (198.18.98.1, 2001:db8:98::1) --veth-- {tag}a  (root ns)
    server ns: {tag}s (198.18.98.2, 2001:db8:98::2) --veth-- {tag}b  (root ns)

The root-side ends {tag}a and {tag}b have no addresses (IPv6 off, so the root
stack stays quiet on them): whatever bridges them (a DPDK vdev pair, testpmd)
is the only path between the namespaces. Offloads are off on all four ends,
so every frame is at most MTU-sized with its checksums filled in.

Used by tests/test_dpdk.py and bench/bench_dpdk.py; needs root, iproute2 and
ethtool. VethBed is a context manager and removes everything it made, also
after a failure half-way through setup.
"""

from __future__ import annotations

import os
import subprocess

CLIENT4, SERVER4 = "198.18.98.1", "198.18.98.2"
CLIENT6, SERVER6 = "2001:db8:98::1", "2001:db8:98::2"
OFFLOADS = ["rx", "tx", "sg", "tso", "gso", "gro", "lro", "rxvlan", "txvlan"]


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


class VethBed:
    """Namespaces {tag}C/{tag}S and veths {tag}a/{tag}b (root) <-> {tag}c/{tag}s."""

    def __init__(self, tag: str | None = None):
        self.tag = tag or f"md{os.getpid() % 10**7}"
        assert len(self.tag) <= 13, "interface names are at most 15 bytes"
        self.ns_client, self.ns_server = f"{self.tag}C", f"{self.tag}S"
        self.a, self.b = f"{self.tag}a", f"{self.tag}b"  # root-side ends: the forwarder's
        self._made: list[tuple[str, str]] = []

    def __enter__(self) -> VethBed:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        for ns, inner, outer, ip4, ip6 in (
            (self.ns_client, f"{self.tag}c", self.a, CLIENT4, CLIENT6),
            (self.ns_server, f"{self.tag}s", self.b, SERVER4, SERVER6),
        ):
            _run("ip", "netns", "add", ns)
            self._made.append(("netns", ns))
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self._made.append(("link", outer))
            _run("ip", "link", "set", inner, "netns", ns)
            _run("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1")
            _run("ethtool", "-K", outer, *self._offload_args(), check=False)
            _run("ip", "link", "set", outer, "up")
            nx = ("ip", "netns", "exec", ns)
            _run(*nx, "ethtool", "-K", inner, *self._offload_args(), check=False)
            _run(*nx, "ip", "link", "set", "lo", "up")
            _run(*nx, "ip", "addr", "add", f"{ip4}/24", "dev", inner)
            _run(*nx, "ip", "addr", "add", f"{ip6}/64", "dev", inner, "nodad")
            _run(*nx, "ip", "link", "set", inner, "up")

    @staticmethod
    def _offload_args() -> list[str]:
        return [x for o in OFFLOADS for x in (o, "off")]

    def in_client(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_client, *cmd]

    def in_server(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_server, *cmd]

    def close(self) -> None:
        """Remove the veths and namespaces this bed made (deleting a netns kills its veth end)."""
        for kind, name in reversed(self._made):
            if kind == "link":
                _run("ip", "link", "del", name, check=False)
            else:
                # processes still inside would keep the namespace alive: end them first
                pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
                _run("ip", "netns", "del", name, check=False)
        self._made.clear()
