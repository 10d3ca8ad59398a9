"""suricata-verify cases from ../shared/corpus run through `mos ids` by a
runner that reads each test.yaml itself (tests/suricata_verify.py).

Every check of every case must pass except those listed in KNOWN, each with
its reason (a parser mos does not have yet, or a named difference still
open).  A listed check that starts to pass fails this test too, so the list
stays exact."""

from __future__ import annotations

import os

import pytest

import suricata_verify as sv

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "corpus")

TLS_ACK = ("IDS mode: Suricata parses the server's handshake flight when the client "
           "acknowledges it, so its tls record names the ACK's packet; mos writes it on "
           "the packet that completed the flight")
FLOW_TCP = ("the flow record has no tcp flag fields (tcp_flags, syn, fin, ...) and its "
            "state follows mos's end reason")
FILEINFO = "EVE fileinfo records (files carried in HTTP bodies) are not written"
NO_REQUEST = ("a response seen without its request (midstream): libhtp makes no "
              "transaction for it, so no http record")
SWAP = ("midstream: the client is guessed from the ports; turning a flow around when its "
        "first bytes are a request the other way (Suricata's protocol detection), and EVE "
        "anomaly records, are not done yet")
HTTP_NEXT = ("HTTP: mos.app.http's transaction or buffer differs from Suricata's libhtp "
             "setup here (evader corner cases, close-delimited bodies, chunk extensions); "
             "not analysed yet")
WHOLE_HTTP = "the check compares the whole EVE http object; mos writes more of its fields"
TIMING = ("the alert's flow counters and http.length are taken when the request line is "
          "parsed; Suricata's when it inspects the transaction later")

#: case -> {check index: reason}; "*" stands for every check of the case
KNOWN = {
    "alert-testmyids-midstream": {1: NO_REQUEST},
    "tcp-stream-after-swap": {0: SWAP, 1: SWAP},
    # suricata-verify-app
    "bug-130": {"*": HTTP_NEXT},
    "bug-2646-01": {0: TLS_ACK, 1: FLOW_TCP},
    "bug-28": {4: WHOLE_HTTP},
    "bug-814": {"*": TIMING},
    "detect-uricontent-04": {0: SWAP, 1: SWAP, 2: SWAP},
    "http-chunked": {17: HTTP_NEXT, 18: HTTP_NEXT, 19: HTTP_NEXT, 20: HTTP_NEXT,
                     21: HTTP_NEXT, 22: HTTP_NEXT},
    "http-close-headers": {0: HTTP_NEXT},
    "http-evader-000": {2: FILEINFO},
    "http-evader-104": {2: FILEINFO},
}


def _cases():
    out = []
    for sub in ("suricata-verify", "suricata-verify-app"):
        root = os.path.join(SHARED, sub)
        if os.path.isdir(root):
            out += [pytest.param(c, id=f"{sub}/{c.name}") for c in sv.find_cases(root)]
    return out


CASES = _cases()


@pytest.mark.skipif(not CASES, reason="../shared/corpus is not there")
@pytest.mark.parametrize("case", CASES)
def test_suricata_verify_case(case, tmp_path):
    p = sv.run_case(case, str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    records = sv.read_eve(str(tmp_path))
    assert any(r.get("event_type") == "stats" for r in records)
    known = KNOWN.get(case.name, {})
    wrong, fixed = [], []
    for i, chk in enumerate(case.checks):
        ok, detail = sv.check(chk, records, str(tmp_path))
        reason = known.get(i) or known.get("*")
        if ok and reason and i in known:
            fixed.append(f"check {i} passes now: remove it from KNOWN ({reason})")
        elif not ok and not reason:
            wrong.append(f"check {i}: {detail}")
    assert not wrong, "\n".join(wrong) + "\n" + p.stderr[-2000:]
    assert not fixed, "\n".join(fixed)


def test_known_names_real_cases():
    names = {c.values[0].name for c in CASES}
    assert not CASES or set(KNOWN) <= names, set(KNOWN) - names


def test_runner_reads_checks_and_counts():
    rec = [{"event_type": "alert", "alert": {"signature_id": 1}, "src_port": 80},
           {"event_type": "alert", "alert": {"signature_id": 2}},
           {"event_type": "stats", "stats": {"tcp": {"reassembly_gap": 0}}}]
    assert sv.check({"filter": {"count": 1, "match": {"alert.signature_id": 1,
                                                      "src_port": 80}}}, rec, ".")[0]
    assert not sv.check({"filter": {"count": 2, "match": {"event_type": "alert",
                                                          "src_port": 80}}}, rec, ".")[0]
    assert sv.check({"filter": {"count": 1, "match": {"stats.tcp.reassembly_gap": 0}}},
                    rec, ".")[0]
    assert sv.check({"filter": {"count": 0, "match": {"has-key": "alert.engine"}}}, rec, ".")[0]
    assert sv.check({"filter": {"gt": 1, "match": {"event_type": "alert"}}}, rec, ".")[0]


def test_flow_record_counts_match_the_suricata_expectation_without_app_proto(tmp_path):
    """tcp-stream-after-swap's flow check, app_proto aside (that needs the
    HTTP parser): bytes and direction of the flow record as upstream expects."""
    case = next((c for c in CASES if c.values[0].name == "tcp-stream-after-swap"), None)
    if case is None:
        pytest.skip("corpus not there")
    p = sv.run_case(case.values[0], str(tmp_path))
    assert p.returncode == 0, p.stderr
    flows = [r for r in sv.read_eve(str(tmp_path)) if r["event_type"] == "flow"]
    assert [(f["dest_port"], f["flow"]["bytes_toserver"], f["flow"]["bytes_toclient"])
            for f in flows] == [(80, 608, 1037)]
