"""threshold and detection_filter, per kind and track, over packet time."""

from __future__ import annotations


import pytest

from middleboxes.ids.rules import Threshold
from middleboxes.ids.thresholds import Thresholds
from test_ids_evasion import Talk, run_ids

A, B = "198.18.0.1", "198.18.0.2"


@pytest.mark.parametrize("kind,count,expect", [
    ("limit", 2, [1, 1, 0, 0, 0, 0]),
    ("threshold", 3, [0, 0, 1, 0, 0, 1]),
    ("both", 3, [0, 0, 1, 0, 0, 0]),
    ("detection_filter", 4, [0, 0, 0, 0, 1, 1]),
])
def test_each_kind_within_one_window(kind, count, expect):
    t = Thresholds()
    th = Threshold(kind, "by_src", count, 60.0)
    assert [int(t.allow(7, th, A, B, float(i))) for i in range(6)] == expect


def test_windows_restart_and_tracks_keep_apart():
    t = Thresholds()
    lim = Threshold("limit", "by_src", 1, 10.0)
    assert t.allow(1, lim, A, B, 0.0) and not t.allow(1, lim, A, B, 5.0)
    assert t.allow(1, lim, B, A, 5.0)          # another source
    assert t.allow(1, lim, A, B, 10.0)         # a new window
    assert t.allow(2, lim, A, B, 10.0)         # another rule
    dst = Threshold("limit", "by_dst", 1, 10.0)
    assert t.allow(3, dst, A, B, 0.0) and not t.allow(3, dst, "198.18.0.9", B, 1.0)
    rule = Threshold("limit", "by_rule", 1, 10.0)
    assert t.allow(4, rule, A, B, 0.0) and not t.allow(4, rule, B, A, 1.0)


def test_ids_applies_them_to_alerts():
    rules = ('alert tcp any any -> any 80 (msg:"x"; content:"HIT"; '
             'threshold: type limit, track by_src, count 2, seconds 60; sid:1;)\n'
             'alert tcp any any -> any 80 (msg:"y"; content:"HIT"; '
             'detection_filter: track by_src, count 3, seconds 60; sid:2;)\n')
    t = Talk()
    off = 0
    for _ in range(5):
        t.c(off, b"..HIT..")
        off += 7
    t.s(0, ack=off)
    ids, recs = run_ids(rules, t)
    sids = [r["alert"]["signature_id"] for r in recs]
    assert sids.count(1) == 2 and sids.count(2) == 2
    assert ids.stats()["suppressed"] == 3 + 3
