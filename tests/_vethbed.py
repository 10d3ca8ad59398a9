"""The DPDK tests' and bench's names for the DESIGN 5 test bed.

    client ns ── c0 ══ c1 (root ns) │ forwarder │ s1 (root ns) ══ s0 ── server ns

`VethBed` is `mos.testing.testbed.Testbed` (one implementation of the bed: offloads
off, no addresses on the root-side ends, everything removed on exit, also
after a failure half-way through setup) with the forwarder's ends called
`a` (c1) and `b` (s1), and helpers that prefix a command with `ip netns exec`.
Used by tests/test_dpdk.py and bench/bench_dpdk.py; needs root, iproute2
and ethtool.
"""

from __future__ import annotations

from mos.testing.testbed import CLIENT_IP as CLIENT4
from mos.testing.testbed import CLIENT_IP6 as CLIENT6
from mos.testing.testbed import SERVER_IP as SERVER4
from mos.testing.testbed import SERVER_IP6 as SERVER6
from mos.testing.testbed import Testbed

__all__ = ["CLIENT4", "CLIENT6", "SERVER4", "SERVER6", "VethBed"]


class VethBed(Testbed):
    """The test bed; `a`/`b` are the forwarder's ends (c1/s1)."""

    __test__ = False

    @property
    def a(self) -> str:
        return self.c1

    @property
    def b(self) -> str:
        return self.s1

    def in_client(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *cmd]

    def in_server(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *cmd]
