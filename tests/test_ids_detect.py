"""Payload options evaluated on a buffer (middleboxes/ids/detect.py), with
Suricata's content-inspection semantics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleboxes.ids.detect import inspect, matches
from middleboxes.ids.rules import parse_rule


def chain(opts: str):
    return parse_rule(f"alert tcp any any -> any any ({opts} sid:1;)").matches


@pytest.mark.parametrize("opts,buf,want", [
    ('content:"abc";', b"xxabcxx", True),
    ('content:"ABC"; nocase;', b"xxabcxx", True),
    ('content:"ABC";', b"xxabcxx", False),
    ('content:"abc"; offset:2; depth:3;', b"xxabcxx", True),
    ('content:"abc"; offset:3;', b"xxabcxx", False),
    ('content:"abc"; depth:4;', b"xxabcxx", False),
    ('content:"abc"; startswith;', b"abcxx", True),
    ('content:"abc"; startswith;', b"xabc", False),
    ('content:"abc"; endswith;', b"xxabc", True),
    ('content:"abc"; endswith;', b"abcx", False),
    ('content:!"evil";', b"good", True),
    ('content:!"evil";', b"so evil", False),
    # relative: distance from the end of the previous match, within counted
    # from there plus distance (Suricata)
    ('content:"a"; content:"b"; distance:2;', b"a.b", False),
    ('content:"a"; content:"b"; distance:2;', b"a..b", True),
    ('content:"a"; content:"b"; within:2;', b"a.b", True),
    ('content:"a"; content:"b"; within:2;', b"a..b", False),
    ('content:"a"; content:"b"; distance:1; within:2;', b"a.b", True),
    ('content:"a"; content:"b"; distance:1; within:2;', b"a..b", True),
    ('content:"a"; content:"b"; distance:1; within:2;', b"a...b", False),
    ('content:"a"; content:"b"; distance:-1; within:2;', b"ab", True),
    # backtracking: the first "a" fails the within, the second succeeds
    ('content:"a"; content:"b"; within:1;', b"a..ab", True),
    ('content:"a"; content:!"b"; within:3;', b"a.b", False),
    ('content:"a"; content:!"b"; within:3;', b"a...b", True),
    ('pcre:"/^GET \\/[a-z]+/";', b"GET /abc", True),
    ('content:"x"; pcre:"/^y/R";', b"xy", True),
    ('content:"x"; pcre:"/^y/R";', b"x y", False),
    ('pcre:!"/evil/i";', b"EVIL", False),
    ('content:"|00|"; byte_test:2,>,256,0,relative;', b"\x00\x01\x02", True),
    ('content:"|00|"; byte_test:2,>,256,0,relative,little;', b"\x00\x01\x02", True),
    ('content:"|00|"; byte_test:2,=,513,0,relative,little;', b"\x00\x01\x02", True),
    ('byte_test:3,=,123,0,string,dec;', b"123", True),
    ('byte_test:1,&,0x80,0;', b"\x81", True),
    ('byte_test:1,!&,0x80,0;', b"\x81", False),
    ('byte_test:2,=,3,0,bitmask 0x0F00;', b"\x03\xff", True),
    ('byte_test:4,=,1,0;', b"\x00\x01", False),     # not enough bytes
    # byte_jump moves the position: 2-byte length 3, then "end" right after
    ('byte_jump:2,0; content:"end"; within:3;', b"\x00\x03abcend", True),
    ('byte_jump:2,0; content:"end"; within:3;', b"\x00\x02abcend", False),
    ('byte_extract:1,0,n; content:"z"; distance:n; within:1;', b"\x02abz", True),
    ('byte_extract:1,0,n; content:"z"; distance:n; within:1;', b"\x01abz", False),
    ('content:"ab"; isdataat:2,relative;', b"abcd", True),     # prev + 2 <= len
    ('content:"ab"; isdataat:2,relative;', b"abc", False),
    ('content:"ab"; isdataat:!2,relative;', b"abc", True),
    ('isdataat:3;', b"abcd", True),                              # 3 < len
    ('isdataat:4;', b"abcd", False),
])
def test_options(opts, buf, want):
    assert matches(chain(opts), buf) is want


def test_result_end_is_after_the_last_match():
    assert inspect(chain('content:"ab"; content:"cd"; distance:0;'), b"xxab..cdyy").end == 8


def test_crafted_input_hits_the_step_budget_not_a_hang():
    c = chain('content:"a"; content:"a"; distance:0; content:"a"; distance:0; '
              'content:"b"; distance:0;')
    r = inspect(c, b"a" * 5000)
    assert not r.matched and r.exhausted and r.steps > 3000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.binary(min_size=1, max_size=3),
       st.integers(0, 8), st.integers(0, 8))
def test_single_content_agrees_with_find(buf, pat, off, depth):
    """content with offset/depth is a find in [offset, offset+depth)."""
    hexp = "|" + pat.hex() + "|"
    opts = f'content:"{hexp}"; offset:{off};'
    if depth >= len(pat):
        opts += f" depth:{depth};"
        want = buf.find(pat, off, off + depth) >= 0
    else:
        want = buf.find(pat, off) >= 0
    assert matches(chain(opts), buf) is want


def test_module_examples_run():
    import doctest

    from middleboxes.ids import detect
    res = doctest.testmod(detect)
    assert res.attempted > 0 and res.failed == 0
