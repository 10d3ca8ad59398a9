"""Handler faults and API misuse (issue 8, items 2 and 6).

on_handler_error, as Suricata's exception policies: ``log`` counts a
handler's exception, logs one line naming handler, event, flow and packet
number (the traceback once per handler and exception type) and goes on;
``stop`` ends the run with that line; ``disable-handler`` unregisters the
handler after its first exception; ``raise`` propagates it; ``auto`` is
``log`` in a run and ``raise`` when frames are fed by hand.  The app's
finish() runs on every way out.  Misuse (wrong signature, misspelled event,
hook or side, flow.packet outside a handler, operations on an ended flow)
is an error that names the valid choices.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import sys
import textwrap

import dpkt
import pytest

import mos
from mos import Event, Hook, Side
from mos.errors import FlowClosedError, HandlerContextError, HandlerError, RegistrationError
from tcpconv import Conv, run_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = mos.sample_capture()
SAMPLE_FRAMES = 319


def run_cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mos", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


class EveryTenth:
    """A PKT_IN handler raising on every 10th call."""

    def __init__(self):
        self.calls = 0

    def __call__(self, flow, side, event):
        self.calls += 1
        if self.calls % 10 == 0:
            raise ValueError(f"call {self.calls}")


def engine_with(handler, policy, event=Event.PKT_IN, **kw):
    eng = mos.Engine(mos.Config(on_handler_error=policy))
    mon = eng.attach(mos.Monitor(name="faulty"))
    mon.on(event, handler, **kw)
    return eng, mon


def http_conv():
    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\r\n\r\n")
    c.ack("s")
    c.send("s", b"HTTP/1.0 200 OK\r\n\r\nhello")
    c.ack("c")
    c.fin("c")
    c.ack("s")
    c.fin("s")
    c.ack("c")
    return c


# --- log (and auto in a run) -------------------------------------------------------------


@pytest.mark.parametrize("policy", ["log", "auto"])
def test_run_handler_raising_every_tenth_event_runs_to_the_end_counted_exactly(policy, caplog):
    h = EveryTenth()
    eng, _ = engine_with(h, policy)
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    stats = eng.run(SAMPLE)
    assert stats.packets == SAMPLE_FRAMES                   # the capture was read to its end
    assert h.calls == stats.handler_calls == SAMPLE_FRAMES  # PKT_IN at RECV: once per packet
    assert stats.handler_errors == h.calls // 10 == 31
    name = f"{__name__}.EveryTenth"
    assert stats.handler_errors_by_handler == {name: 31}
    assert eng.counters()["handler_errors"] == 31
    assert stats.as_dict()["handler_errors"] == 31
    assert eng.counters()["flows_ended"] == stats.flows     # every flow still ended
    lines = [r.getMessage() for r in caplog.records if r.name == "mos.handlers"]
    # one line per error up to 10, then at powers of two: 1..10, 16
    assert len(lines) == 11
    first = lines[0]
    assert "\n" not in first
    assert re.search(rf"handler {re.escape(name)} raised ValueError: call 10 at event PKT_IN "
                     r"\(RECV, (CLIENT|SERVER)\), flow 1 tcp 198\.18\.\S+:\d+ -> "
                     r"198\.18\.\S+:80, packet 10$", first), first
    assert "(error 16 of this handler)" in lines[-1]
    # the traceback once per (handler, exception type)
    assert sum(1 for r in caplog.records if r.exc_info) == 1


def test_run_packet_number_is_the_frame_index_in_the_capture(caplog):
    seen = []

    def boom(flow, side, event):
        seen.append(flow.packet.ts)
        if len(seen) == 123:
            raise RuntimeError("at 123")

    eng, _ = engine_with(boom, "log")
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    eng.run(SAMPLE)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith(", packet 123"), line
    ts = [t for t, _ in dpkt.pcap.Reader(open(SAMPLE, "rb"))]
    assert seen[122] == pytest.approx(ts[122])


def test_log_traceback_again_for_a_new_exception_type(caplog):
    calls = [0]

    def flaky(flow, side, event):
        calls[0] += 1
        if calls[0] in (1, 2):
            raise ValueError("v")
        if calls[0] == 3:
            raise KeyError("k")

    eng, _ = engine_with(flaky, "log")
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    eng.run(SAMPLE)
    assert [bool(r.exc_info) for r in caplog.records] == [True, False, True]


def test_log_filter_and_timer_errors_are_counted_and_the_run_goes_on(caplog):
    def bad_filter(flow, side, event):
        raise ZeroDivisionError("filter")

    ude = mos.define_event(Event.CONN_START, bad_filter, name="never")
    fired, ticks = [], []
    eng = mos.Engine(mos.Config(on_handler_error="log"))
    mon = eng.attach(mos.Monitor())
    mon.on(ude, lambda f, s, e: fired.append(f.id))

    def start(flow, side, event):
        flow.set_timer(0.0001, tick)

    def tick(flow):
        ticks.append(flow.packet)  # a timer has no packet (not the last event's)
        raise OSError("timer")

    mon.on(Event.CONN_START, start)
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    stats = eng.run(SAMPLE)
    assert fired == []                                   # a failing filter is a "no"
    assert ticks and all(p is None for p in ticks)
    by = stats.handler_errors_by_handler
    assert by[f"{__name__}.test_log_filter_and_timer_errors_are_counted_and_the_run_goes_on"
              ".<locals>.bad_filter"] == stats.flows
    assert by[f"{__name__}.test_log_filter_and_timer_errors_are_counted_and_the_run_goes_on"
              ".<locals>.tick"] == len(ticks)
    assert any("filter " in r.getMessage() and "event never" in r.getMessage()
               for r in caplog.records)
    assert any(r.getMessage().startswith("mos: timer ") and ", after packet " in r.getMessage()
               for r in caplog.records)


# --- auto / raise ------------------------------------------------------------------------


def test_auto_raises_when_fed_by_hand_with_a_note_naming_the_handler():
    def boom(flow, side, event):
        raise ValueError("handler bug")

    eng, mon = engine_with(boom, "auto", Event.CONN_START)
    c = http_conv()
    with pytest.raises(ValueError, match="handler bug") as info:
        eng.feed(c.frames[0][1], c.frames[0][0])
    (note,) = info.value.__notes__
    assert re.search(r"raised by handler \S+boom at event CONN_START \(SEND, CLIENT\), flow 1 "
                     r"tcp 198\.18\.0\.1:40000 -> 198\.18\.0\.2:80, packet 1$", note), note
    assert eng.on_handler_error == "raise"
    assert eng.counters()["handler_errors"] == 1


def test_raise_nested_in_raise_event_is_counted_once():
    child = mos.alloc_event(Event.CONN_START, name="child")

    def inner(flow, side, event):
        raise ValueError("inner")

    def outer(flow, side, event):
        flow.raise_event(child, side)

    eng = mos.Engine(mos.Config(on_handler_error="raise"))
    mon = eng.attach(mos.Monitor())
    mon.on(Event.CONN_START, outer)
    mon.on(child, inner)
    with pytest.raises(ValueError, match="inner") as info:
        eng.feed(http_conv().frames[0][1], 1.0)
    assert len(info.value.__notes__) == 1
    assert eng.counters()["handler_errors"] == 1


# --- stop --------------------------------------------------------------------------------


def test_stop_raises_handler_error_in_one_line_and_later_errors_only_count():
    h = EveryTenth()
    ends = []
    eng, mon = engine_with(h, "stop")
    mon.on(Event.CONN_END, lambda f, s, e: ends.append(f.id), side=Side.CLIENT)
    with pytest.raises(HandlerError) as info:
        eng.run(SAMPLE)
    msg = str(info.value)
    assert "\n" not in msg
    assert re.search(r"^handler \S+EveryTenth raised ValueError: call 10 at event PKT_IN "
                     r"\(RECV, \w+\), flow 1 tcp \S+ -> \S+, packet 10; run stopped "
                     r"\(on_handler_error: stop\)$", msg), msg
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.handler.endswith("EveryTenth")
    assert eng.counters()["frames"] == 10                  # nothing after the 10th packet
    eng.close()                                            # finishing: errors count, no raise
    assert ends == [1]


FAULTY_APP = textwrap.dedent('''
    import sys
    import mos

    calls = [0]

    def attach(eng):
        mon = eng.attach(mos.Monitor(name="faulty"))
        mon.on(mos.Event.PKT_IN, on_packet)

    def on_packet(flow, side, event):
        calls[0] += 1
        if calls[0] % {every} == 0:
            raise {exc}("broken at call %d" % calls[0])

    def finish(eng, stats):
        print("finish ran after", calls[0], "calls", file=sys.stderr)
''')


def write_app(tmp_path, every=10, exc="ValueError"):
    app = tmp_path / "faulty.py"
    app.write_text(FAULTY_APP.format(every=every, exc=exc))
    return str(app)


def test_cli_log_reports_errors_in_the_summary_and_runs_finish(tmp_path):
    r = run_cli("run", SAMPLE, "--app", write_app(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"finish ran after {SAMPLE_FRAMES} calls" in r.stderr
    assert f"{SAMPLE_FRAMES} packets, 7 flows" in r.stderr
    assert "31 handler errors" in r.stderr
    assert "mos: handler errors: faulty.on_packet 31" in r.stderr
    assert r.stderr.count("Traceback") == 1


def test_cli_stop_stops_with_one_line_runs_finish_and_prints_counters(tmp_path):
    r = run_cli("run", SAMPLE, "--app", write_app(tmp_path), "--no-progress",
                "--on-handler-error", "stop")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("mos: error:")]
    assert len(errs) == 1
    assert re.search(r"handler faulty\.on_packet raised ValueError: broken at call 10 at event "
                     r"PKT_IN .*flow 1 tcp .*packet 10; run stopped", errs[0]), errs[0]
    assert "finish ran after 10 calls" in r.stderr
    assert "mos: 10 packets, 1 flows" in r.stderr and "1 handler errors" in r.stderr


def test_cli_interrupt_still_runs_finish_and_prints_counters(tmp_path):
    app = write_app(tmp_path, every=50, exc="KeyboardInterrupt")
    r = run_cli("run", SAMPLE, "--app", app, "--no-progress")
    assert r.returncode == 130, r.stderr
    assert "finish ran after 50 calls" in r.stderr
    assert "mos: 50 packets" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_policy_lists_the_choices():
    r = run_cli("run", SAMPLE, "--on-handler-error", "ignore")
    assert r.returncode == 2
    assert "log" in r.stderr and "disable-handler" in r.stderr and "stop" in r.stderr


# --- disable-handler ---------------------------------------------------------------------


def test_disable_handler_after_first_error_others_go_on(caplog):
    calls = []

    def broken(flow, side, event):
        calls.append(flow.id)
        raise ValueError("always")

    good = []
    eng, mon = engine_with(broken, "disable-handler")
    mon.on(Event.CONN_START, lambda f, s, e: good.append(f.id))
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    stats = eng.run(SAMPLE)
    assert calls == [1]
    assert stats.handler_errors == 1
    assert len(good) == stats.flows == 7
    assert eng.disabled_handlers() == [
        f"{__name__}.test_disable_handler_after_first_error_others_go_on.<locals>.broken"]
    (rec,) = caplog.records
    assert rec.getMessage().endswith("; disabled (on_handler_error: disable-handler)")
    assert rec.exc_info


def test_disable_handler_per_flow_handler_and_timer():
    per_flow, ticks = [], []

    def local(flow, side, event):
        per_flow.append(flow.id)
        raise ValueError("local")

    def tick(flow):
        ticks.append(flow.id)
        raise ValueError("tick")

    def start(flow, side, event):
        flow.on(Event.PKT_IN, local)
        flow.set_timer(0.0001, tick, periodic=True)

    eng, _ = engine_with(start, "disable-handler", Event.CONN_START)
    stats = eng.run(SAMPLE)
    assert per_flow == [1] and ticks == [1]
    assert stats.handler_errors == 2


def test_disable_handler_that_was_the_only_one_costs_no_more_events():
    def broken(flow, side, event):
        raise ValueError("x")

    eng, _ = engine_with(broken, "disable-handler")
    stats = eng.run(SAMPLE)
    assert stats.events == 1 and stats.handler_calls == 1


# --- signatures --------------------------------------------------------------------------


def test_wrong_signature_is_refused_at_registration_naming_handler_event_and_signature():
    def two(flow, side):
        pass

    mon = mos.Monitor()
    with pytest.raises(RegistrationError) as info:
        mon.on(Event.CONN_NEW_DATA, two)
    msg = str(info.value)
    assert "handler for CONN_NEW_DATA" in msg
    assert "two(flow, side)" in msg and "(flow, side, event)" in msg
    with pytest.raises(RegistrationError, match=r"handler for PKT_IN: .*\(flow, side, event\)"):
        mon.on(Event.PKT_IN, lambda flow, side, event, extra: None)
    with pytest.raises(RegistrationError, match="too many positional arguments"):
        mon.on(Event.PKT_IN, lambda flow, side, *, event: None)
    assert mon.interest == 0                            # nothing was registered


def test_signatures_that_accept_the_arguments_are_taken():
    class App:
        def handler(self, flow, side, event):
            pass

        def __call__(self, *args):
            pass

    mon = mos.Monitor()
    mon.on(Event.PKT_IN, App().handler)
    mon.on(Event.PKT_IN, App())
    mon.on(Event.PKT_IN, lambda *a, **k: None)
    mon.on(Event.PKT_IN, lambda flow, side, event=None, more=1: None)
    mon.on(Event.PKT_IN, functools.partial(lambda tag, f, s, e: None, "tag"))
    mon.on(Event.PKT_IN, print)                          # a builtin: taken on trust


def test_timer_filter_and_per_flow_signatures_are_checked():
    eng = mos.Engine()
    with pytest.raises(RegistrationError, match=r"timer callback: .*<lambda>\(\) must accept "
                                                r"\(engine\)"):
        eng.set_timer(1.0, lambda: None)
    with pytest.raises(RegistrationError, match=r"filter of event big: .*\(flow, side, event\)"):
        mos.define_event(Event.CONN_NEW_DATA, lambda flow: True, name="big")
    with pytest.raises(RegistrationError, match=r"filter of monitor m: .*\(flow\)"):
        mos.Monitor(filter=lambda flow, side: True, name="m")
    errs = []

    def start(flow, side, event):
        for bad in (lambda: None, lambda a, b: None):
            try:
                flow.set_timer(1.0, bad)
            except RegistrationError as exc:
                errs.append(str(exc))
        try:
            flow.on(Event.PKT_IN, lambda f: None)
        except RegistrationError as exc:
            errs.append(str(exc))

    mon = mos.Monitor()
    mon.on(Event.CONN_START, start)
    run_frames(http_conv().frames, mon)
    assert len(errs) == 3 and "(flow)" in errs[0] and "handler for PKT_IN" in errs[2]


# --- misuse lists the valid choices ------------------------------------------------------


def test_misspelled_event_name_lists_close_matches_and_valid_names():
    mon = mos.Monitor()
    with pytest.raises(RegistrationError) as info:
        mon.on("CONN_STRAT", lambda f, s, e: None)
    msg = str(info.value)
    assert "unknown event 'CONN_STRAT' (did you mean CONN_START" in msg
    for ev in Event:
        assert ev.name in msg
    with pytest.raises(AttributeError) as info:
        Event.CONN_STRAT
    assert "did you mean CONN_START" in str(info.value) and "PKT_IN" in str(info.value)
    with pytest.raises(RegistrationError, match="valid events: PKT_IN, CONN_START"):
        mon.on(99, lambda f, s, e: None)
    mon.on("conn_start", lambda f, s, e: None)          # names work, in any case
    assert mon.interest != 0


def test_unknown_hook_and_side_list_the_valid_ones():
    mon = mos.Monitor()
    with pytest.raises(RegistrationError, match=r"unknown hook 'RECIEVE' \(did you mean RECV\?\); "
                                                r"valid hooks: RECV for CONN_NEW_DATA"):
        mon.on(Event.CONN_NEW_DATA, lambda f, s, e: None, hook="RECIEVE")
    with pytest.raises(RegistrationError, match="valid hooks: SEND, RECV for PKT_IN"):
        mon.on(Event.PKT_IN, lambda f, s, e: None, hook=7)
    with pytest.raises(RegistrationError, match="CONN_NEW_DATA never fires at hook SEND; "
                                                "valid hooks: RECV"):
        mon.on(Event.CONN_NEW_DATA, lambda f, s, e: None, hook="send")
    with pytest.raises(RegistrationError, match="unknown side 'SERVR'.*valid sides: CLIENT, "
                                                "SERVER, BOTH"):
        mon.on(Event.PKT_IN, lambda f, s, e: None, side="SERVR")
    with pytest.raises(AttributeError, match="did you mean RECV"):
        Hook.RECIEVE
    mon.on(Event.PKT_IN, lambda f, s, e: None, hook="SEND", side="server")


def test_config_policy_value_lists_the_choices():
    with pytest.raises(mos.ConfigError, match="on_handler_error: 'ignore' is not one of auto, "
                                              "log, stop, disable-handler, raise"):
        mos.Config(on_handler_error="ignore")


def test_settings_policy_key_is_checked_and_named():
    from mos.settings import parse_settings
    base = "ports: [{name: a, driver: afpacket, iface: c1}, {name: b, driver: afpacket, " \
           "iface: s1}]\nforward: [[a, b]]\n"
    s = parse_settings(base + "monitor: {on_handler_error: stop}\n", name="m.yaml")
    assert s.engine_config().on_handler_error == "stop"
    with pytest.raises(mos.ConfigError, match=r"m\.yaml:4: monitor\.on_handler_error: "
                                              r"'disable' is not one of"):
        parse_settings(base + "monitor:\n  on_handler_error: disable\n", name="m.yaml")


def test_flow_packet_outside_a_handler_is_a_clear_error():
    mon = mos.Monitor()
    kept = []
    mon.on(Event.CONN_START, lambda f, s, e: kept.append(f))
    eng = run_frames(http_conv().frames[:3], mon, close=False)
    with pytest.raises(HandlerContextError, match="only while a handler runs"):
        kept[0].packet
    with pytest.raises(HandlerContextError):
        kept[0].event_info
    with pytest.raises(RuntimeError):                    # still a RuntimeError, as before
        kept[0].drop()
    assert eng.counters()["flows_live"] == 1


# --- operations on an ended flow ---------------------------------------------------------


def test_ended_flow_refuses_set_timer_reset_on_in_its_last_burst():
    errs, ctx = [], []
    mon = mos.Monitor()

    def end(flow, side, event):
        for name, op in (("set_timer", lambda: flow.set_timer(1.0, lambda f: None)),
                         ("reset", flow.reset),
                         ("on", lambda: flow.on(Event.PKT_IN, lambda f, s, e: None))):
            try:
                op()
            except FlowClosedError as exc:
                errs.append((name, str(exc)))
        flow.uctx = "kept for the other CONN_END"     # state still readable: allowed
        ctx.append(flow.uctx)

    mon.on(Event.CONN_END, end, side=Side.CLIENT)
    run_frames(http_conv().frames, mon)
    assert [n for n, _ in errs] == ["set_timer", "reset", "on"]
    assert errs[0][1] == "flow 1 has ended (CLOSE): set_timer() needs a live flow"
    assert ctx == ["kept for the other CONN_END"]


def test_ended_flow_refuses_drop_of_the_packet_that_ended_it():
    c = Conv()
    c.handshake()
    c.rst("c")
    errs = []
    mon = mos.Monitor()

    def pkt(flow, side, event):
        if flow.packet.flags & 0x04:
            try:
                flow.drop()
            except FlowClosedError as exc:
                errs.append(str(exc))

    mon.on(Event.PKT_IN, pkt)
    run_frames(c.frames, mon)
    assert errs == ["flow 1 has ended (RST): drop() needs a live flow"]


def test_ended_flow_refuses_uctx_and_set_timer_after_its_burst():
    kept = []
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda f, s, e: kept.append(f))
    run_frames(http_conv().frames, mon)
    f = kept[0]
    with pytest.raises(FlowClosedError, match="flow 1 has ended: its uctx can no longer be set"):
        f.uctx = {}
    with pytest.raises(FlowClosedError, match=r"flow 1 has ended \(CLOSE\): set_timer\(\)"):
        f.set_timer(1.0, lambda fl: None)
    with pytest.raises(FlowClosedError):
        f.reset()
    assert f.uctx is None                                   # reading stays harmless


def test_ended_flow_errors_in_a_handler_follow_the_policy(caplog):
    def end(flow, side, event):
        flow.set_timer(1.0, lambda f: None)

    eng, _ = engine_with(end, "log", Event.CONN_END, side=Side.CLIENT)
    caplog.set_level(logging.ERROR, logger="mos.handlers")
    stats = eng.run(SAMPLE)
    assert stats.handler_errors == stats.flows
    assert "FlowClosedError: flow 1 has ended" in caplog.records[0].getMessage()


# --- in-line over capture ports: forwarding survives ---------------------------------------


def _inline_settings(tmp_path):
    """The sample capture arrives on west; what leaves by east is written to east.pcap."""
    out, empty = tmp_path / "east.pcap", tmp_path / "empty.pcap"
    with open(empty, "wb") as fh:
        dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
    conf = tmp_path / "mos.yaml"
    conf.write_text(f"ports:\n  - {{name: west, driver: pcap, path: {SAMPLE}}}\n"
                    f"  - {{name: east, driver: pcap, path: {empty}, options: {{write: {out}}}}}\n"
                    f"forward: [[west, east]]\n")
    return conf, out


def test_inline_capture_ports_forward_everything_with_a_raising_handler(tmp_path):
    import json
    conf, written = _inline_settings(tmp_path)
    r = run_cli("run", "-c", str(conf), "--app", write_app(tmp_path, every=1), "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ports"]["east"]["tx"] == out["ports"]["west"]["rx"] == SAMPLE_FRAMES
    with open(written, "rb") as a, open(SAMPLE, "rb") as b:
        assert [bytes(f) for _, f in dpkt.pcap.Reader(a)] == \
            [bytes(f) for _, f in dpkt.pcap.Reader(b)]
    assert out["handler_errors"] == out["handler_calls"] > 0
    assert out["handler_errors_by_handler"] == {"faulty.on_packet": out["handler_errors"]}
    assert "finish ran after" in r.stderr


def test_inline_capture_ports_stop_prints_counters_and_the_error(tmp_path):
    import json
    conf, _ = _inline_settings(tmp_path)
    r = run_cli("run", "-c", str(conf), "--app", write_app(tmp_path, every=5), "--no-progress",
                "--on-handler-error", "stop")
    assert r.returncode == 2
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["handler_errors"] == 1
    assert "finish ran after 5 calls" in r.stderr
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("mos: error:")]
    assert "faulty.on_packet raised ValueError: broken at call 5" in err
    assert "run stopped" in err and "Traceback" not in r.stderr


def test_auto_is_log_for_a_run_only_and_a_set_policy_is_kept():
    h = EveryTenth()
    eng, _ = engine_with(h, "auto")
    assert eng.on_handler_error == "raise"
    assert eng.run(SAMPLE).handler_errors == 31          # logged during the run
    assert eng.on_handler_error == "raise"               # fed by hand again: raises
    eng2, _ = engine_with(EveryTenth(), "auto")
    eng2.on_handler_error = "stop"                       # an app may choose in attach()
    with pytest.raises(HandlerError):
        eng2.run(SAMPLE)
    with pytest.raises(ValueError, match="on_handler_error: 'ignore' is not one of"):
        eng2.on_handler_error = "ignore"
