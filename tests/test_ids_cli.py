"""`mos ids` on the shipped capture with the shipped demo rules, and its
handling of bad input: refused rules reported with file and line, bad
settings and paths as one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "middleboxes", "ids", "demo.rules")


def ids(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mos", "ids", "--no-progress", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_demo_rules_on_the_sample_capture(tmp_path):
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path))
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    alerts = [r for r in recs if r["event_type"] == "alert"]
    by_sid = {}
    for a in alerts:
        by_sid[a["alert"]["signature_id"]] = by_sid.get(a["alert"]["signature_id"], 0) + 1
    # 6 requests by curl, one 404, 3 .bin downloads (flowbit set by the request,
    # checked on the response), the server banner limited to 1 per client address,
    # and the HTTP rule on the 3 .bin requests' transactions
    assert by_sid == {9000001: 6, 9000002: 1, 9000004: 3, 9000005: 2, 9000006: 3}
    assert (tmp_path / "fast.log").read_text().count("\n") == 15
    h = [a for a in alerts if a["alert"]["signature_id"] == 9000006]
    assert {a["http"]["url"] for a in h} == {"/big.bin", "/mid.bin"}
    assert all(a["app_proto"] == "http" and a["tx_id"] == 0 for a in h)
    assert len([r for r in recs if r["event_type"] == "http"]) == 6
    a = next(a for a in alerts if a["alert"]["signature_id"] == 9000002)
    assert a["src_port"] == 80 and a["direction"] == "to_client" and a["pcap_cnt"] > 0
    assert "404" in a["payload_printable"]
    (stats,) = [r for r in recs if r["event_type"] == "stats"]
    assert stats["stats"]["detect"]["alert"] == 15
    assert "15 alerts" in p.stderr and "rules 6 loaded, 0 refused" in p.stderr


def test_malformed_and_unsupported_rules_are_reported_and_the_rest_run(tmp_path):
    rules = tmp_path / "mixed.rules"
    rules.write_text(
        'alert tcp any any -> any 80 (msg:"ok"; content:"curl/"; sid:1;)\n'
        'alert tcp any any -> any 80 (msg:"broken"; content:"x; sid:2;)\n'
        'alert smtp any any -> any any (msg:"app"; content:"a"; sid:3;)\n'
        'alert tcp any any -> any 80 (msg:"unknown kw"; frobnicate:1; sid:4;)\n'
        'this is not a rule\n'
        '# alert tcp any any -> any any (msg:"disabled"; sid:5;)\n')
    p = ids("-r", mos.sample_capture(), "-S", str(rules), "-l", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    for line in (2, 3, 4, 5):
        assert f"mixed.rules:{line}" in p.stderr
    assert "needs an application-layer parser" in p.stderr
    assert "unknown or unsupported keyword 'frobnicate'" in p.stderr
    assert "rules 1 loaded, 4 refused" in p.stderr
    assert "sid 1: 6" in p.stderr


def test_bad_arguments_are_one_line_errors(tmp_path):
    p = ids("-r", "/nonexistent.pcap", "-S", DEMO, "-l", str(tmp_path))
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path),
            "--set", "stream.midstraem=true")
    assert p.returncode == 2 and "did you mean stream.midstream" in p.stderr
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path),
            "--set", "stream.midstream=maybe")
    assert p.returncode == 2 and "not a boolean" in p.stderr
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path),
            "--set", "app-layer.protocols.http.enabled=yes")
    assert p.returncode == 0 and "not used by mos, ignored" in p.stderr
    p = ids("-r", mos.sample_capture(), "-S", str(tmp_path / "none.rules"), "-l", str(tmp_path))
    assert p.returncode == 0 and "cannot read" in p.stderr and "no rule loaded" in p.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(blocker / "sub"))
    assert p.returncode == 2 and "log directory" in p.stderr and "Traceback" not in p.stderr


def test_corrupt_capture_is_a_clear_error_and_outputs_are_closed(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(open(mos.sample_capture(), "rb").read()[:5000] + b"\xff" * 64)
    p = ids("-r", str(bad), "-S", DEMO, "-l", str(tmp_path / "o"))
    assert "Traceback" not in p.stderr
    recs = [json.loads(x) for x in (tmp_path / "o" / "eve.json").read_text().splitlines()]
    assert recs[-1]["event_type"] == "stats"


def test_directory_of_captures(tmp_path):
    d = tmp_path / "caps"
    d.mkdir()
    data = open(mos.sample_capture(), "rb").read()
    (d / "a.pcap").write_bytes(data)
    (d / "b.pcap").write_bytes(data)
    p = ids("-r", str(d), "-S", DEMO, "-l", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    # thresholds count across captures (packet time): the banner rule stays at 2
    assert "638 packets, 28 alerts" in p.stderr and "sid 9000005: 2" in p.stderr
    assert "sid 9000006: 6" in p.stderr


def test_flow_records_at_flow_end(tmp_path):
    import dpkt
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path))
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    flows = [r for r in recs if r["event_type"] == "flow"]
    # frames and bytes per direction, every frame's wire length (as tshark's
    # conversation table has them too)
    want = {}
    with open(mos.sample_capture(), "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            tcp = eth.data.data
            to_server = tcp.dport in (80, 81)   # the sample's servers
            d = want.setdefault(tcp.sport if to_server else tcp.dport, [0, 0, 0, 0])
            i = 0 if to_server else 2
            d[i] += 1
            d[i + 1] += len(buf)
    assert sorted(f["src_port"] for f in flows) == sorted(want)
    for f in flows:
        fl = f["flow"]
        assert [fl["pkts_toserver"], fl["bytes_toserver"], fl["pkts_toclient"],
                fl["bytes_toclient"]] == want[f["src_port"]]
        assert fl["state"] == "closed" and fl["reason"] == "forced"
    assert sum(f["flow"]["alerted"] for f in flows) == 6     # every curl request alerted


def _write_pcap(path, frames):
    import dpkt
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, fr in frames:
            w.writepkt(fr, ts)


def _alerts(outdir):
    recs = [json.loads(x) for x in (outdir / "eve.json").read_text().splitlines()]
    return [r for r in recs if r["event_type"] == "alert"]


def test_host_os_policy_from_set_and_from_the_yaml(tmp_path):
    from test_ids_evasion import RULES, overlap_talk
    cap = tmp_path / "overlap.pcap"
    _write_pcap(cap, overlap_talk("same-start-longer").frames)
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    base = ("-r", str(cap), "-S", str(rules), "-l", str(tmp_path), "-k", "none")
    p = ids(*base)                      # Suricata's default, bsd: the first copy stays
    assert p.returncode == 0, p.stderr
    assert _alerts(tmp_path) == []
    p = ids(*base, "--set", "host-os-policy.linux=198.19.0.0/16, 2001:db8::/32")
    assert p.returncode == 0, p.stderr
    assert len(_alerts(tmp_path)) == 1
    y = tmp_path / "suricata.yaml"
    y.write_text("vars:\n  address-groups:\n    HOME_NET: '[198.19.0.0/16]'\n"
                 "host-os-policy:\n  windows: [0.0.0.0/0]\n  linux: [198.19.0.1]\n")
    p = ids(*base, "--vars", str(y))
    assert p.returncode == 0, p.stderr
    assert len(_alerts(tmp_path)) == 1
    p = ids(*base, "--set", "mos.overlap=first")
    assert p.returncode == 0 and _alerts(tmp_path) == []
    # bad tables: one line naming the key and the value
    p = ids(*base, "--set", "host-os-policy.beos=198.19.0.0/16")
    assert p.returncode == 2 and "beos: not an overlap policy" in p.stderr
    p = ids(*base, "--set", "host-os-policy.linux=198.19.0.0/33")
    assert p.returncode == 2 and "'198.19.0.0/33' is not an address or prefix" in p.stderr
    y.write_text("host-os-policy:\n  linux: 7\n")
    p = ids(*base, "--vars", str(y))
    assert p.returncode == 2 and "suricata.yaml: host-os-policy: linux: expected a list" \
        in p.stderr and "Traceback" not in p.stderr


def test_stream_inline_setting(tmp_path):
    """Off-line the default is IDS mode: a stream match is reported with the
    sender's first packet after the ACK; stream.inline=true reports it with
    the packet that completed it."""
    from test_ids_evasion import RULES, Talk
    t = Talk()
    t.c(0, b"GET /EVILSTRING")   # frame 4
    t.s(0, ack=15)
    t.c(15, b" HTTP/1.0")        # frame 6
    cap = tmp_path / "t.pcap"
    _write_pcap(cap, t.frames)
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    base = ("-r", str(cap), "-S", str(rules), "-l", str(tmp_path))
    for setting, cnt in (((), 6), (("--set", "stream.inline=auto"), 6),
                         (("--set", "stream.inline=false"), 6),
                         (("--set", "stream.inline=true"), 4)):
        p = ids(*base, *setting)
        assert p.returncode == 0, p.stderr
        assert [a["pcap_cnt"] for a in _alerts(tmp_path)] == [cnt], setting
    p = ids(*base, "--set", "stream.inline=sometimes")
    assert p.returncode == 2 and "not a boolean" in p.stderr


def test_eve_to_a_unix_socket_a_collector_reads(tmp_path):
    """--eve unix_stream:PATH: the records go to the socket a collector
    listens on (Suricata's filetype unix_stream), fast.log stays a file."""
    from test_ids_eve import unix_collector
    path = str(tmp_path / "eve.sock")
    received = unix_collector(path)
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path),
            "--eve", "unix_stream:" + path)
    data = received()
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in data.decode().splitlines()]
    kinds = {r["event_type"] for r in recs}
    assert {"alert", "flow", "stats"} <= kinds
    assert not (tmp_path / "eve.json").exists()
    n_fast = len((tmp_path / "fast.log").read_text().splitlines())
    assert n_fast == sum(r["event_type"] == "alert" for r in recs) > 0
    # nobody listening: the run goes on, the loss is said
    p = ids("-r", mos.sample_capture(), "-S", DEMO, "-l", str(tmp_path),
            "--eve", "unix_stream:" + str(tmp_path / "nobody.sock"))
    assert p.returncode == 0 and "EVE records not delivered" in p.stderr
