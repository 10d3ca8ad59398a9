"""In-line semantics without ports: what the engine forwards, drops, rewrites
and injects, checked through its sans-I/O output (collect mode)."""

import _netpkt as N
import dpkt
from tcpconv import Conv

import mos
from mos import Event, Side, _native

CLIENT_PORT, SERVER_PORT = 0, 1


def inline_engine(*monitors):
    eng = mos.Engine(mos.Config(checksum="verify"))
    eng.collect = True
    eng.set_peers([SERVER_PORT, CLIENT_PORT])
    for m in monitors:
        eng.attach(m)
    return eng


def feed_conv(eng, conv):
    for ts, frame in conv.frames:
        tcp = dpkt.ethernet.Ethernet(frame).data.data
        from_client = tcp.sport == conv.client[1]
        eng.feed(frame, ts, iface=CLIENT_PORT if from_client else SERVER_PORT)
    return eng.take_output()


def http(payload_c=b"GET /secret HTTP/1.0\r\n\r\n", payload_s=b"HTTP/1.0 200 OK\r\n\r\nhello"):
    c = Conv()
    c.handshake()
    c.send("c", payload_c)
    c.send("s", payload_s)
    c.fin("c")
    c.fin("s")
    c.ack("c")
    return c


def test_every_frame_forwarded_unchanged_by_default():
    c = http()
    out = feed_conv(inline_engine(), c)
    assert [k for k, _, _ in out] == ["fwd"] * len(c.frames)
    assert [d for _, _, d in out] == [f for _, f in c.frames]


def test_non_tcp_frames_are_forwarded_too():
    eng = inline_engine()
    udp = N.eth(N.ip4("198.18.0.1", "198.18.0.2", 17, N.udp(5000, 53, b"q")))
    arp = N.eth(bytes(28), 0x0806, dst=b"\xff" * 6)
    for fr in (udp, arp):
        eng.feed(fr, 1.0, iface=0)
    out = eng.take_output()
    assert [(k, i) for k, i, _ in out] == [("fwd", 0), ("fwd", 0)]
    assert out[0][2] == udp and out[1][2] == arp


def test_handler_drop_stops_only_that_packet():
    mon = mos.Monitor()

    @mon.on(Event.CONN_NEW_DATA, side=Side.SERVER)
    def no_secret(flow, side, event):
        if b"/secret" in flow.peek(side):
            flow.drop()

    c = http()
    out = feed_conv(inline_engine(mon), c)
    kinds = [k for k, _, _ in out]
    assert kinds.count("drop") == 1
    dropped = c.frames[kinds.index("drop")][1]
    assert b"/secret" in dropped


def test_overwrite_payload_same_length_fixes_checksums():
    mon = mos.Monitor()

    @mon.on(Event.PKT_IN)
    def shout(flow, side, event):
        pkt = flow.packet
        i = pkt.payload.find(b"hello")
        if i >= 0:
            pkt.overwrite(i, b"HELLO")

    c = http()
    out = feed_conv(inline_engine(mon), c)
    sent = [d for k, _, d in out if k == "fwd"]
    changed = [d for d in sent if b"HELLO" in d]
    assert len(changed) == 1 and b"hello" not in changed[0]
    d = _native.decode(1, changed[0])
    assert d["tcp_csum_ok"] in (1, True) and d["ip_csum_ok"] in (1, True)


def test_overwrite_out_of_range_is_refused():
    mon = mos.Monitor()
    errors = []

    @mon.on(Event.PKT_IN)
    def bad(flow, side, event):
        try:
            flow.packet.overwrite(10_000, b"x")
        except ValueError as exc:
            errors.append(str(exc))

    feed_conv(inline_engine(mon), http())
    assert errors and "does not fit" in errors[0]


def test_reset_sends_rst_to_both_ends_with_expected_sequence_numbers():
    mon = mos.Monitor()

    @mon.on(Event.CONN_NEW_DATA, side=Side.SERVER)
    def kill(flow, side, event):
        flow.reset()

    ends = []
    mon.on(Event.CONN_END, lambda f, s, e: ends.append(f.event_info.reason), side=Side.CLIENT)
    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\r\n\r\n")
    out = feed_conv(inline_engine(mon), c)
    kinds = [k for k, _, _ in out]
    assert kinds[:3] == ["fwd"] * 3 and kinds[3] == "drop"
    rsts = [(i, dpkt.ethernet.Ethernet(d)) for k, i, d in out if k == "inject"]
    to_server = [e for i, e in rsts if i == SERVER_PORT]
    to_client = [e for i, e in rsts if i == CLIENT_PORT]
    assert to_server and to_client
    for e in to_server:
        assert e.data.data.flags & dpkt.tcp.TH_RST
        assert (e.data.data.sport, e.data.data.dport) == (40000, 80)
    # the server expects the request's first byte: its last ACK said so
    assert {e.data.data.seq for e in to_server} >= {c.cisn + 1}
    assert {e.data.data.seq for e in to_client} == {c.sisn + 1}
    assert ends == [mos.EndReason.RST]
    # link headers: towards the server as the client's packet, towards the client swapped
    req = dpkt.ethernet.Ethernet(c.frames[3][1])
    assert to_server[0].src == req.src and to_client[0].dst == req.src
    for i, e in rsts:
        assert _native.decode(1, bytes(e))["tcp_csum_ok"] in (1, True)


def test_inject_raw_frame_goes_out_of_named_port():
    eng = inline_engine()
    eng.inject(b"\x02" * 14 + b"payload", SERVER_PORT)
    eng.feed(http().frames[0][1], 1.0, iface=0)
    out = eng.take_output()
    assert ("inject", SERVER_PORT, b"\x02" * 14 + b"payload") in out


def test_drop_outside_a_packet_event_is_refused():
    mon = mos.Monitor()
    errs = []

    def end(flow, side, event):
        try:
            flow.drop()
        except RuntimeError as exc:
            errs.append(exc)

    mon.on(Event.CONN_END, end, side=Side.CLIENT)
    eng = inline_engine(mon)
    feed_conv(eng, http())
    assert errs
