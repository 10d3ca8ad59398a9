"""The impairment box (middleboxes/impair) in-line without ports: what it
forwards, drops, duplicates and holds back, through the engine's sans-I/O
output (collect mode)."""

import _netpkt as N
import pytest
from tcpconv import Conv

import mos
from middleboxes import impair

CLIENT_PORT, SERVER_PORT = 0, 1


def engine_with_box(**params):
    eng = mos.Engine(mos.Config())
    eng.collect = True
    eng.set_peers([SERVER_PORT, CLIENT_PORT])
    return eng, impair.attach(eng, **params)


def bulk(n=400):
    c = Conv()
    c.handshake()
    for i in range(n):
        c.send("c", bytes([i & 0xFF]) * 100)
    return c


def feed(eng, conv):
    for ts, frame in conv.frames:
        from_client = frame[26:30] == bytes([198, 18, 0, 1])
        eng.feed(frame, ts, iface=CLIENT_PORT if from_client else SERVER_PORT)
    return eng.take_output()


def test_nothing_changes_with_zero_impairment():
    c = bulk(50)
    eng, box = engine_with_box(loss=0, dup=0, reorder=0)
    out = feed(eng, c)
    assert [(k, d) for k, _, d in out] == [("fwd", f) for _, f in c.frames]
    assert box.counts["packets"] == len(c.frames)


def test_fractions_follow_the_parameters_and_every_packet_is_accounted_for():
    c = bulk(4000)
    eng, box = engine_with_box(loss=0.1, dup=0.05, reorder=0.05, seed=11)
    out = feed(eng, c)
    n, k = len(c.frames), box.counts
    assert k["packets"] == n
    for key, frac in (("dropped", 0.1), ("duplicated", 0.05), ("reordered", 0.05)):
        assert abs(k[key] / n - frac) < 0.02, k
    kinds = [x for x, _, _ in out]
    # held packets are drops in the engine's output until they are injected
    assert kinds.count("drop") == k["dropped"] + k["reordered"]
    released = k["released_by_next"] + k["released_by_timer"]
    assert kinds.count("inject") == k["duplicated"] + released
    assert released + box.nheld == k["reordered"] and k["released_by_next"] > 0
    # every frame that left is one that arrived (copies and late ones included)
    sent = {f for _, f in c.frames}
    assert all(d in sent for x, _, d in out if x != "drop")


def test_same_seed_same_choices():
    c = bulk(500)
    outs = []
    for _ in range(2):
        eng, _box = engine_with_box(seed=5, loss=0.2, dup=0.1, reorder=0.1)
        outs.append([(x, d) for x, _, d in feed(eng, c)])
    assert outs[0] == outs[1]


def test_a_held_packet_leaves_after_the_next_one_of_its_direction():
    c = bulk(30)
    eng, box = engine_with_box(loss=0, dup=0, reorder=1.0, max_held=1)
    out = feed(eng, c)
    fwd = [d for x, _, d in out if x in ("fwd", "inject")]
    data = [f for _, f in c.frames]
    # the first frame of the flow was held, the second forwarded (box full) and then
    # the first let out: every pair swaps places
    assert fwd[0] == data[1] and fwd[1] == data[0]
    assert box.nheld <= 1 and box.counts["held_full"] > 0


def test_the_hold_timer_lets_out_a_lone_held_packet():
    c = Conv()
    c.handshake()
    c.send("c", b"last")
    eng, box = engine_with_box(loss=0, dup=0, reorder=0, hold=0.005)
    feed(eng, Conv(frames=c.frames[:3]))
    box.params["reorder"] = 1.0
    eng.feed(c.frames[3][1], c.frames[3][0], iface=CLIENT_PORT)
    assert [x for x, _, _ in eng.take_output()] == ["drop"] and box.nheld == 1
    # 10 ms later an ARP frame (not TCP) comes: the timer fired before it
    arp = N.eth(bytes(28), 0x0806, dst=b"\xff" * 6)
    eng.feed(arp, c.frames[3][0] + 0.010, iface=SERVER_PORT)
    out = eng.take_output()
    assert out == [("fwd", SERVER_PORT, arp), ("inject", SERVER_PORT, c.frames[3][1])]
    assert box.nheld == 0 and box.counts["released_by_timer"] == 1


def test_non_tcp_passes_untouched():
    eng, box = engine_with_box(loss=1.0, dup=0, reorder=0)
    udp = N.eth(N.ip4("198.18.0.1", "198.18.0.2", 17, N.udp(5000, 53, b"q")))
    arp = N.eth(bytes(28), 0x0806, dst=b"\xff" * 6)
    for fr in (udp, arp):
        eng.feed(fr, 1.0, iface=0)
    assert [(k, d) for k, _, d in eng.take_output()] == [("fwd", udp), ("fwd", arp)]
    assert box.counts["packets"] == 0


def test_handshake_off_spares_syns():
    c = bulk(5)
    eng, box = engine_with_box(loss=1.0, dup=0, reorder=0, handshake=0)
    out = feed(eng, c)
    assert [x for x, _, _ in out][:2] == ["fwd", "fwd"]
    assert box.counts["dropped"] == len(c.frames) - 2


def test_parameters_from_the_environment_and_their_errors(monkeypatch):
    monkeypatch.setenv("MOS_IMPAIR", "loss=0.3, seed=9")
    _eng, box = engine_with_box()
    assert box.params["loss"] == 0.3 and box.params["seed"] == 9 and box.params["dup"] == 0.01
    for bad in ("loss", "los=1", "loss=x", "loss=2"):
        monkeypatch.setenv("MOS_IMPAIR", bad)
        with pytest.raises(mos.ConfigError):
            engine_with_box()


def test_finish_prints_the_counters(capsys):
    eng, _box = engine_with_box()
    feed(eng, bulk(10))
    impair.finish(eng)
    line = capsys.readouterr().err
    assert line.startswith("impair: {") and '"packets": 13' in line
