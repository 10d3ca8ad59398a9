"""suricata-verify cases from ../shared/corpus run through `mos ids` by a
runner that reads each test.yaml itself (tests/suricata_verify.py).

Every check must pass except those listed in KNOWN, each with the reason:
a protocol parser mos does not have yet (HTTP, TLS: the application-layer
issue).  A listed check that starts to
pass fails this test too, so the list stays exact."""

from __future__ import annotations

import os

import pytest

import suricata_verify as sv

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "corpus")

HTTP = "needs the HTTP parser (application-layer issue)"
TLS = "needs the TLS parser (application-layer issue)"

#: case -> {check index: reason}; "*" stands for every check of the case
KNOWN = {
    "alert-testmyids-midstream": {1: HTTP},
    "flowbit-oring/flowbit-oring": {0: HTTP},
    "http-ipv6": {2: HTTP},
    "tcp-stream-after-swap": {0: HTTP, 1: HTTP},
}
APP_CASES = {  # suricata-verify-app: every check needs a parser unless listed as passing
    "bug-130": HTTP, "bug-2430": HTTP, "bug-2646-01": TLS, "bug-28": HTTP,
    "bug-3616-ips": HTTP, "bug-4199-4": HTTP, "bug-5929-01": HTTP, "bug-814": HTTP,
    "bug-8336-01-default-track-only": TLS, "community-id-ipv4": TLS, "detect-bsize-0": HTTP,
    "detect-content-ends-with-negated-01": HTTP, "detect-engine-state-01": HTTP,
    "detect-uricontent-04": HTTP, "http-chunked": HTTP, "http-close-headers": HTTP,
    "http-evader-000": HTTP, "http-evader-104": HTTP, "http-missing-protocol": HTTP,
    "http-request-line": HTTP, "http-response-line": HTTP, "http-sticky-start": HTTP,
    "sslv2-tls-upgrade-01": TLS, "tls-cert-noissuer": TLS, "tls-certs-alert": TLS,
    "tls-fingerprint-alert": TLS, "tls13-draft28": TLS,
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
    app = APP_CASES.get(case.name.split("/")[0]) if "suricata-verify-app" in case.folder else None
    known = KNOWN.get(case.name, {})
    wrong, fixed = [], []
    for i, chk in enumerate(case.checks):
        ok, detail = sv.check(chk, records, str(tmp_path))
        reason = known.get(i) or known.get("*")
        if app is not None:
            continue  # needs a parser: only a clean run is checked (no crash, eve.json)
        if ok and reason:
            fixed.append(f"check {i} passes now: remove it from KNOWN ({reason})")
        elif not ok and not reason:
            wrong.append(f"check {i}: {detail}")
    assert not wrong, "\n".join(wrong) + "\n" + p.stderr[-2000:]
    assert not fixed, "\n".join(fixed)


def test_every_app_case_is_named():
    names = {c.values[0].name.split("/")[0] for c in CASES
             if "suricata-verify-app" in c.values[0].folder}
    assert names <= set(APP_CASES), names - set(APP_CASES)


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
