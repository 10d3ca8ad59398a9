"""middleboxes/httplog: Zeek http.log and EVE http records, checked against
tshark on the shipped capture and against conversations built with dpkt."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

import mos

pytest.importorskip("mos.app.http")
from middleboxes.httplog.httplog import HttpLog, main  # noqa: E402
from test_app_http import OK, talk  # noqa: E402


def _tshark(fields):
    p = subprocess.run(["tshark", "-r", mos.sample_capture(), "-Y", "http.request", "-T",
                        "fields", *sum((["-e", f] for f in fields), [])],
                       capture_output=True, text=True, timeout=120)
    return sorted(tuple(x.split("\t")) for x in p.stdout.splitlines() if x)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_eve_records_agree_with_tshark():
    out = io.StringIO()
    log, _ = main(mos.sample_capture(), out, "eve")
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert log.records == len(recs) and recs
    ours = sorted((r["http"]["http_method"], r["http"]["url"], r["http"]["http_user_agent"],
                   str(r["src_port"])) for r in recs)
    assert ours == _tshark(["http.request.method", "http.request.uri", "http.user_agent",
                            "tcp.srcport"])
    for r in recs:
        assert r["event_type"] == "http" and r["proto"] == "TCP" and "pcap_cnt" in r
        assert r["http"]["status"] in (200, 404)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_zeek_log_layout_and_rows():
    out = io.StringIO()
    main(mos.sample_capture(), out, "zeek")
    lines = out.getvalue().splitlines()
    assert lines[0] == "#separator \\x09" and lines[-1] == "#close"
    fields = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(fields, x.split("\t"))) for x in lines if not x.startswith("#")]
    assert sorted((r["method"], r["uri"]) for r in rows) == \
        _tshark(["http.request.method", "http.request.uri"])
    assert all(r["version"] == "1.1" and r["referrer"] == "-" for r in rows)
    assert {r["status_code"] for r in rows} == {"200", "404"}


def test_pipelined_and_unfinished_transactions_are_each_one_record():
    reqs = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    resps = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    out = io.StringIO()
    eng = mos.Engine()
    log = HttpLog(out, "eve").attach(eng)
    for ts, fr in talk(reqs, resps).frames:
        eng.feed(fr, ts)
    eng.close()
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(r["tx_id"], r["http"]["url"]) for r in recs] == [(0, "/a"), (1, "/b")]
    assert recs[1]["http"]["length"] == len(b"only part")


def test_cli_and_a_closed_pipe(tmp_path):
    p = subprocess.run([sys.executable, "-m", "mos", "httplog", "-r", mos.sample_capture(),
                        "--format", "eve", "-w", str(tmp_path / "http.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "http.json").read_text().splitlines()) == 6
    p = subprocess.run(f"{sys.executable} -m mos httplog -r {mos.sample_capture()} | head -3",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr and len(p.stdout.splitlines()) == 3
    p = subprocess.run([sys.executable, "-m", "mos", "httplog", "-r", "/nonexistent.pcap"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    with pytest.raises(ValueError, match="format must be"):
        HttpLog(io.StringIO(), "csv")


def test_docstring_examples():
    import doctest
    from middleboxes.httplog import httplog
    res = doctest.testmod(httplog)
    assert res.attempted and not res.failed
