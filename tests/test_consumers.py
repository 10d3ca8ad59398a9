"""Compiled stream consumers (Engine.add_consumer, engine.h): every in-order
byte reaches a consumer once, in order, with gaps as gaps; its notes are
STREAM_NOTE events carrying the packet that completed the match; no bytes
are kept for a consumer beyond its lookback; reading the capture whole or
frame by frame gives the same notes.  Uses mos.consumers.Literal, the
shipped example consumer."""

from __future__ import annotations

import pytest
from tcpconv import Conv

import mos
from mos import Event, Side
from mos.consumers import Literal


def _notes(frames, patterns, side=Side.SERVER, lookback=0, config=None, extra=None,
           one_by_one=True):
    eng = mos.Engine(config or mos.Config(checksum="verify"))
    lit = Literal(patterns)
    cid = eng.add_consumer(lit, side, lookback=lookback)
    got = []
    mon = mos.Monitor(name="notes")

    def on_note(f, s, e):
        i = f.event_info
        assert i.consumer == cid
        p = f.packet
        got.append((s.name, lit.patterns[i.code], i.a, p.ts if p is not None else None,
                    f.ppeek(s, i.a - len(lit.patterns[i.code]), len(lit.patterns[i.code]))
                    if lookback else None))
    mon.on(Event.STREAM_NOTE, on_note)
    eng.attach(mon)
    if extra is not None:
        eng.attach(extra)
    for ts, fr in frames:
        eng.feed(fr, ts)
    eng.close()
    return got, eng


def test_match_split_across_segments_out_of_order_is_found_once_at_the_completing_packet():
    c = Conv()
    c.handshake()
    c.send("c", b"xxGET /ev")          # offset 0..9
    seg2 = c.c.nxt
    c.c.nxt += 8                       # "il HTTP/" goes later: a hole
    c.send("c", b"1.0\r\n\r\n")        # arrives before the hole fills
    t_hole = c.ts
    c.send("c", b"il HTTP/", seq=seg2)  # fills it: the match completes here
    c.ack("s")
    got, eng = _notes(c.frames, [b"GET /evil", b"HTTP/1.0\r\n", b"nothere"])
    assert [(s, p, a) for s, p, a, _, _ in got] == [
        ("SERVER", b"GET /evil", 11), ("SERVER", b"HTTP/1.0\r\n", 22)]
    assert all(ts == pytest.approx(t_hole) for *_, ts, _ in got)  # the filling packet
    assert eng.counters()["reassembly"]["in_use"] < 4096          # no byte kept for it


def test_every_byte_once_in_order_with_gaps_as_gaps_and_offsets_continuous():
    """A gap (the receiver acknowledged bytes the capture never had) breaks
    matches across it; offsets after it still count from the stream start."""
    c = Conv()
    c.handshake()
    c.send("c", b"abcGE")
    c.c.nxt += 100                     # 100 bytes never captured
    c.send("c", b"T /x abcGET /y")
    c.ack("s")                         # acknowledges past the hole: a gap
    got, eng = _notes(c.frames, [b"GET /", b"abc"])
    # "abcGE" at 0, the gap [5, 105), "T /x abcGET /y" at 105: no "GET /" across
    # the gap; within one chunk Literal reports pattern by pattern
    assert sorted((a, p) for _, p, a, _, _ in got) == [(3, b"abc"), (113, b"abc"), (118, b"GET /")]
    assert eng.counters()["errors"]["gap"] == 1


def test_whole_and_frame_by_frame_give_the_same_notes(tmp_path):
    import dpkt
    c = Conv()
    c.handshake()
    for i in range(50):
        c.send("c", b"..needle.." if i % 7 == 0 else b"hay" * 100)
        c.send("s", b"needle" if i % 5 == 0 else b"straw")
        c.ack("c")
        c.ack("s")
    path = tmp_path / "n.pcap"
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, fr in c.frames:
            w.writepkt(fr, ts)
    one, _ = _notes(c.frames, [b"needle"], side=Side.BOTH)
    eng = mos.Engine(mos.Config(checksum="verify"))
    lit = Literal([b"needle"])
    eng.add_consumer(lit, Side.BOTH)
    whole = []
    mon = mos.Monitor()
    mon.on(Event.STREAM_NOTE, lambda f, s, e: whole.append(
        (s.name, lit.patterns[f.event_info.code], f.event_info.a, f.packet.ts, None)))
    eng.attach(mon)
    eng.run(str(path))
    assert whole == one
    assert sum(1 for s, *_ in one if s == "SERVER") == 8    # client sent it 8 times
    assert sum(1 for s, *_ in one if s == "CLIENT") == 10


def test_lookback_keeps_bytes_for_ppeek_and_no_more():
    c = Conv()
    c.handshake()
    for i in range(40):
        c.send("c", bytes([65 + i % 26]) * 1000 + (b"MARK" if i == 30 else b""))
        c.ack("s")
    held = []
    probe = mos.Monitor(name="probe")
    probe.on(Event.PKT_IN, lambda f, s, e: held.append(f.buffered(Side.SERVER)))
    got, eng = _notes(c.frames, [b"MARK"], lookback=4096, extra=probe)
    assert [(p, peek) for _, p, _, _, peek in got] == [(b"MARK", b"MARK")]
    assert max(head - base for base, head in held) <= 4096 + 1004


def test_no_lookback_and_a_python_reader_beside_it_still_gets_everything():
    c = Conv()
    c.handshake()
    data = bytes(range(256)) * 40
    for k in range(0, len(data), 1000):
        c.send("c", data[k:k + 1000])
    c.ack("s")
    got = []
    reader = mos.Monitor(name="reader")
    reader.on(Event.CONN_NEW_DATA, lambda f, s, e: got.append(f.peek(s)), side=Side.SERVER)
    notes, eng = _notes(c.frames, [bytes(range(250, 256)) + bytes(range(4))], extra=reader)
    assert b"".join(got) == data
    assert len(notes) == 39


def test_consumer_on_client_side_only_sees_server_bytes():
    c = Conv()
    c.handshake()
    c.send("c", b"ping")
    c.send("s", b"pong ping")
    c.ack("c")
    got, _ = _notes(c.frames, [b"ping", b"pong"], side=Side.CLIENT)
    assert sorted((a, s, p) for s, p, a, _, _ in got) == [(4, "CLIENT", b"pong"),
                                                           (9, "CLIENT", b"ping")]


def test_consumer_added_mid_flow_starts_at_the_next_byte_and_remove_ends_streams():
    c = Conv()
    c.handshake()
    c.send("c", b"needle one ")
    eng = mos.Engine(mos.Config(checksum="verify"))
    mon = mos.Monitor()
    seen = []
    mon.on(Event.STREAM_NOTE, lambda f, s, e: seen.append(f.event_info.a))
    eng.attach(mon)
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    lit = Literal([b"needle"])
    cid = eng.add_consumer(lit, Side.SERVER)
    c.frames.clear()
    c.send("c", b"needle two")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert seen == [11 + 6]
    (f,) = eng.live_flows()
    assert f.consumed_to(Side.SERVER) == 21
    assert f.consumed_to(Side.CLIENT) == -1
    eng.remove_consumer(cid)
    with pytest.raises(KeyError):
        eng.remove_consumer(cid)
    c.frames.clear()
    c.send("c", b"needle three")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert seen == [17]


def test_bad_consumers_are_refused_with_clear_errors():
    eng = mos.Engine()
    with pytest.raises(TypeError, match="not a compiled stream consumer"):
        eng.add_consumer(object())
    with pytest.raises(ValueError, match="lookback"):
        eng.add_consumer(Literal([b"x"]), lookback=-1)
    with pytest.raises(ValueError, match="1 to 64 patterns"):
        Literal([])
    with pytest.raises(ValueError, match="length 0"):
        Literal([b""])
    ids = [eng.add_consumer(Literal([b"x"])) for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    with pytest.raises(mos.RegistrationError, match="at most 4"):
        eng.add_consumer(Literal([b"x"]))
    eng.remove_consumer(2)
    assert eng.add_consumer(Literal([b"y"])) == 2


def test_stream_note_only_at_recv_hook_and_named_in_errors():
    mon = mos.Monitor()
    with pytest.raises(mos.RegistrationError):
        mon.on(Event.STREAM_NOTE, lambda f, s, e: None, hook=mos.Hook.SEND)


def test_without_lookback_a_noted_chunk_is_readable_and_nothing_else_is_copied():
    """lookback 0: a stream in which nothing is found is never copied (the
    pool stays empty); the chunk a note came on is kept for its handler,
    until the stream's next bytes."""
    c = Conv()
    c.handshake()
    for i in range(30):
        c.send("c", (b"needle" if i == 20 else b"hay...") * 200)
    c.ack("s")
    eng = mos.Engine(mos.Config(checksum="verify"))
    lit = Literal([b"needle"])
    eng.add_consumer(lit, Side.SERVER)
    seen, peaks = [], []
    mon = mos.Monitor()

    def on_note(f, s, e):
        base, head = f.buffered(s)
        seen.append((f.event_info.a, f.ppeek(s, base, head - base)))
    mon.on(Event.STREAM_NOTE, on_note)
    probe = mos.Monitor(name="probe")
    probe.on(Event.PKT_IN, lambda f, s, e: peaks.append(eng.counters()["reassembly"]["in_use"]))
    eng.attach(mon)
    eng.attach(probe)
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert len(seen) == 200
    chunk = b"needle" * 200
    assert all(peek == chunk for _, peek in seen)
    assert [a for a, _ in seen][:2] == [20 * 1200 + 6, 20 * 1200 + 12]
    assert max(peaks[:20 * 1 + 3]) == 0          # nothing copied before the needle
    assert peaks[-1] < 4096                       # and nothing kept after it
