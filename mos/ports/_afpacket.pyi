"""Type stubs for mos.ports._afpacket (mos/ports/_afpacket.pyx)."""

from collections.abc import Iterable
from typing import Literal

from typing_extensions import Self

__all__ = ["AfPacketPort", "blast", "forward_loop"]

class AfPacketPort:
    iface: str
    fanout_group: int | None
    tx_mode: Literal["ring", "sendmmsg"]
    rx_ring: Literal["v3", "v2"]
    poll_ms: int
    def __init__(
        self,
        iface: str,
        fanout_group: int | None = None,
        ring_bytes: int = ...,
        poll_ms: int = 1,
        *,
        block_bytes: int = 0,
        retire_ms: int = 1,
        tx: Literal["ring", "sendmmsg"] = "ring",
        tx_ring_bytes: int = ...,
        promisc: bool = True,
        rx_ring: Literal["v3", "v2"] = "v3",
        fanout_defrag: bool = True,
    ) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def ring(self) -> tuple[int, int]: ...
    @property
    def mtu(self) -> int: ...
    def c_port(self) -> tuple[int, int, int, int]: ...
    def fileno(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def recv_burst(self, max: int = 64) -> list[tuple[int, bytes]]: ...
    def send(self, frames: Iterable[bytes | bytearray | memoryview]) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> bool: ...

def forward_loop(
    port_a: object,
    port_b: object,
    seconds: float,
    burst: int = 64,
    idle_exit: float = 0.0,
    stop: bytearray | None = None,
) -> dict[str, float]: ...
def blast(port: object, frame: bytes, seconds: float, burst: int = 64) -> tuple[int, float]: ...
