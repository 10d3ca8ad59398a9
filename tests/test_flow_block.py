"""flow.block(): the current packet and every later one of the flow are
dropped before any endpoint model sees them (an IDS's drop action)."""

from __future__ import annotations

from tcpconv import Conv

import mos
from mos import Event, Side


def test_block_drops_the_rest_of_the_flow_and_only_it():
    a, b = Conv(client=("198.18.0.1", 40000)), Conv(client=("198.18.0.1", 40001))
    for c in (a, b):
        c.handshake()
    a.send("c", b"BLOCK ME")
    for c in (a, b):
        c.send("c", b"more")
        c.ack("s")
    eng = mos.Engine(mos.Config(checksum="verify"))
    seen, dropped = [], []
    mon = mos.Monitor(reads=Side.SERVER)

    def on_data(f, s, e):
        data = f.peek(s)
        seen.append((f.client_port, data))
        if data == b"BLOCK ME":
            f.block()
            dropped.append(f.packet.dropped)
    mon.on(Event.CONN_NEW_DATA, on_data, side=Side.SERVER)
    eng.attach(mon)
    for ts, fr in sorted(a.frames + b.frames):
        eng.feed(fr, ts)
    assert sorted(seen) == [(40000, b"BLOCK ME"), (40001, b"more")]
    assert dropped == [True]
    assert eng.counters()["blocked"] == 2            # a's "more" and its server's ACK
    fa = next(f for f in eng.live_flows() if f.client_port == 40000)
    assert fa.server.received == 8                    # the blocked bytes never arrived
