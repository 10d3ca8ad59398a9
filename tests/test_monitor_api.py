"""User-defined events, per-flow handlers, monitor filters, timers, control calls."""

import pytest

import mos
from mos import Event, Side
from tcpconv import Conv, Recorder, run_frames


def http_conv(port=40000):
    c = Conv(client=("198.18.0.1", port))
    c.handshake()
    c.send("c", b"GET /evil HTTP/1.0\r\n\r\n")
    c.send("s", b"HTTP/1.0 200 OK\r\n\r\nbody")
    c.fin("c")
    c.ack("s")
    c.fin("s")
    c.ack("c")
    return c


def test_ude_fires_when_filter_true_and_chains():
    seen = []
    is_data_to_server = mos.define_event(Event.CONN_NEW_DATA, lambda f, s, e: s is Side.SERVER)
    has_get = mos.define_event(is_data_to_server,
                               lambda f, s, e: f.ppeek(s, 0, 4) == b"GET ", name="http_get")
    mon = mos.Monitor()
    mon.on(has_get, lambda f, s, e: seen.append((e.name, s.name)))
    run_frames(http_conv().frames, mon)
    assert seen == [("http_get", "SERVER")]
    assert has_get.chain() == [Event.CONN_NEW_DATA, is_data_to_server, has_get]


def test_ude_filter_runs_only_if_a_handler_is_below():
    calls = []
    unused = mos.define_event(Event.PKT_IN, lambda f, s, e: calls.append(1) or True)
    mos.define_event(unused, lambda f, s, e: calls.append(2) or True)
    mon = mos.Monitor()
    mon.on(Event.PKT_IN, lambda f, s, e: None)
    run_frames(http_conv().frames, mon)
    assert calls == []


def test_filter_raised_child_events_per_pattern():
    """A filter that finds several patterns raises one child event per find."""
    got = []
    scan = mos.define_event(Event.CONN_NEW_DATA, lambda f, s, e: True, name="scan")
    found_get = mos.alloc_event(scan, name="found_get")
    found_evil = mos.alloc_event(scan, name="found_evil")

    def matcher(flow, side, event):
        data = flow.ppeek(side, 0, 1 << 16)
        if b"GET" in data:
            flow.raise_event(found_get, side)
        if b"evil" in data:
            flow.raise_event(found_evil, side)
        return False  # nothing to do for scan's own handlers

    scan.filter = matcher
    mon = mos.Monitor()
    mon.on(found_get, lambda f, s, e: got.append(e.name), side=Side.SERVER)
    mon.on(found_evil, lambda f, s, e: got.append(e.name), side=Side.SERVER)
    mon.on(scan, lambda f, s, e: got.append("scan"))
    # rebuild trees after changing the filter
    mon._changed()
    run_frames(http_conv().frames, mon)
    assert got == ["found_get", "found_evil"]


def test_per_flow_handler_registered_from_a_handler():
    data = []
    mon = mos.Monitor()

    def on_start(flow, side, event):
        if flow.client_port == 40001:
            flow.on(Event.CONN_NEW_DATA, lambda f, s, e: data.append((f.client_port, f.peek(s))))

    mon.on(Event.CONN_START, on_start)
    frames = sorted(http_conv(40000).frames + http_conv(40001).frames, key=lambda x: x[0])
    run_frames(frames, mon)
    assert data and all(port == 40001 for port, _ in data)
    assert b"".join(d for _, d in data) == b"GET /evil HTTP/1.0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody"


def test_monitor_filter_limits_flows():
    a, b = [], []
    m1 = mos.Monitor(filter="src port 40001")
    m1.on(Event.CONN_START, lambda f, s, e: a.append(f.client_port))
    m2 = mos.Monitor()
    m2.on(Event.CONN_START, lambda f, s, e: b.append(f.client_port))
    frames = sorted(http_conv(40000).frames + http_conv(40001).frames, key=lambda x: x[0])
    run_frames(frames, m1, m2)
    assert a == [40001]
    assert sorted(b) == [40000, 40001]


def test_two_monitors_have_independent_read_offsets():
    r1, r2 = Recorder(), Recorder()
    run_frames(http_conv().frames, r1.mon, r2.mon)
    assert r1.data == r2.data
    assert r1.data[Side.SERVER].startswith(b"GET")


def test_flow_timer_fires_in_capture_time():
    fired = []
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda f, s, e: f.set_timer(0.0025, lambda fl: fired.append(fl.engine.now)))
    c = http_conv()
    run_frames(c.frames, mon)
    assert len(fired) == 1
    assert abs(fired[0] - (c.frames[0][0] + 0.0025)) < 1e-6


def test_periodic_engine_timer_and_cancel():
    eng = mos.Engine()
    ticks = []
    t = eng.set_timer(1.0, lambda e: ticks.append(round(e.now, 3)), periodic=True)
    c = Conv(step=0.5)
    c.ts = 0.0
    c.handshake()
    for _ in range(8):
        c.send("c", b"x")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert ticks == [1.0, 2.0, 3.0, 4.0]  # the 5.0 one is due once time passes 5.0
    eng.advance(5.5)
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]
    t.cancel()
    eng.advance(20)
    assert len(ticks) == 5


def test_stop_monitoring_a_side_silences_its_events():
    got = []
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda f, s, e: f.stop_monitoring(Side.CLIENT))
    mon.on(Event.CONN_NEW_DATA, lambda f, s, e: got.append(s.name))
    run_frames(http_conv().frames, mon)
    assert got == ["SERVER"]


def test_set_buffer_size_zero_keeps_tracking_without_bytes():
    ends = []
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda f, s, e: f.set_buffer_size(Side.BOTH, 0))
    mon.on(Event.CONN_END, lambda f, s, e: ends.append((f.client.state.name, f.server.received)), side=Side.CLIENT)
    run_frames(http_conv().frames, mon)
    assert ends == [("TIME_WAIT", 22)]


def test_overlap_policy_last_per_flow():
    c = Conv()
    c.handshake()
    seq = c.c.nxt
    c.packet("c", 0x18, b"AAAA", seq=seq + 4, advance=False)   # out of order, held
    c.packet("c", 0x18, b"BBBB", seq=seq + 4, advance=False)   # overlaps the held bytes
    c.packet("c", 0x18, b"0123", seq=seq, advance=False)
    for policy, expect in (("first", b"0123AAAA"), ("last", b"0123BBBB")):
        rec = Recorder()
        rec.mon.on(Event.CONN_START, lambda f, s, e, p=policy: f.set_overlap(Side.BOTH, p))
        run_frames(c.frames, rec.mon, close=False)
        assert rec.data[Side.SERVER] == expect, policy


def test_packet_view_valid_only_in_callback():
    pkts = []
    mon = mos.Monitor()
    mon.on(Event.PKT_IN, lambda f, s, e: pkts.append((f.packet, f.packet.flag_names, f.packet.payload)))
    run_frames(http_conv().frames, mon)
    assert pkts[0][1] == "S"
    assert pkts[3][2] == b"GET /evil HTTP/1.0\r\n\r\n"
    with pytest.raises(RuntimeError, match="outlived"):
        pkts[0][0].seq


def test_handler_exception_propagates_and_engine_stays_usable():
    mon = mos.Monitor()

    def boom(f, s, e):
        raise ValueError("handler bug")

    mon.on(Event.CONN_START, boom)
    eng = mos.Engine()
    eng.attach(mon)
    c = http_conv()
    with pytest.raises(ValueError, match="handler bug"):
        eng.feed(c.frames[0][1], c.frames[0][0])
    mon.off(Event.CONN_START, boom)
    for ts, fr in c.frames[1:]:
        eng.feed(fr, ts)
    assert eng.counters()["flows_ended"] == 1


def test_config_errors_name_the_key():
    with pytest.raises(mos.ConfigError, match="overlap: 'newest' is not one of first, last"):
        mos.Config(overlap="newest")
    with pytest.raises(mos.ConfigError, match="buffer_size: -1 is out of range"):
        mos.Config(buffer_size=-1)
    with pytest.raises(mos.ConfigError, match="checksum"):
        mos.Config(checksum="maybe")
    with pytest.raises(mos.ConfigError, match="tcp_timeout"):
        mos.Config(tcp_timeout=0)


def test_engine_timer_set_before_first_packet_counts_from_it():
    """Regression: a timer set before any packet must not start in 1970."""
    eng = mos.Engine()
    ticks = []
    eng.set_timer(1.0, lambda e: ticks.append(round(e.now, 3)), periodic=True)
    c = Conv(step=0.5)
    c.ts = 1_700_000_000.0
    c.handshake()
    for _ in range(6):
        c.send("c", b"x")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert ticks == [1_700_000_001.0, 1_700_000_002.0, 1_700_000_003.0]  # 4.0 is the last packet


def test_periodic_timer_coalesces_ticks_missed_in_a_quiet_spell():
    eng = mos.Engine()
    ticks = []
    c = Conv()
    c.ts = 10.0
    c.syn()
    eng.feed(c.frames[0][1], 10.0)
    eng.set_timer(0.001, lambda e: ticks.append(e.now), periodic=True)
    eng.advance(10.0 + 3600)  # an hour of nothing: one tick, not 3.6 million
    assert len(ticks) == 1


def test_uctx_is_per_monitor():
    """Two apps on one engine each keep their own per-flow context."""
    seen = []
    a, b = mos.Monitor(name="a"), mos.Monitor(name="b")

    def start_a(flow, side, event):
        flow.uctx = "A"

    def start_b(flow, side, event):
        assert flow.uctx is None
        flow.uctx = "B"
        flow.set_timer(0.001, lambda fl: seen.append(("timer-b", fl.uctx)))

    a.on(Event.CONN_START, start_a)
    b.on(Event.CONN_START, start_b)
    a.on(Event.CONN_END, lambda f, s, e: seen.append(("a", f.uctx)), side=Side.CLIENT)
    b.on(Event.CONN_END, lambda f, s, e: seen.append(("b", f.uctx)), side=Side.CLIENT)
    run_frames(http_conv().frames, a, b)
    assert ("a", "A") in seen and ("b", "B") in seen and ("timer-b", "B") in seen


def test_interest_masks_have_room_for_more_events():
    """The core tells 32 event ids apart (the monitor uses 9): the end host's
    and the IDS's events fit without changing the layout; a mask beyond it is
    refused by name."""
    from mos.dualstack._engine import interest_capacity

    events, bits = interest_capacity()
    assert events >= 32 and bits >= events * 6
    assert max(mos.Event) < events

    class FakeMonitor:  # what the engine reads of a monitor when (re)building
        filter = None
        trees: dict = {}

        def __init__(self, mask):
            self.interest = mask

        def bind(self, engine):
            pass

    eng = mos.Engine(mos.Config())
    eng.attach(FakeMonitor(1 << (31 * 6 + 5)))  # last event id, NONE hook, server
    with pytest.raises(ValueError, match="beyond 32 events"):
        eng.attach(FakeMonitor(1 << bits))
    assert len(eng.monitors) == 1  # the refused monitor was not kept
