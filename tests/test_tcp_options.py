"""TCP options, parsed and written by mos/tcp/options.c (RFC 9293 3.1-3.2,
RFC 7323 window scale and timestamps, RFC 2018 SACK)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mos.tcp._tcp import parse_options, write_options
from test_decode import opts_of  # the decoder, as test_decode reads it

u32 = st.integers(0, 2**32 - 1)


def test_syn_options_layout_is_padded_and_parses_back():
    """MSS, SACK-permitted + timestamps, NOP + window scale: 20 bytes, a
    multiple of 4 (RFC 9293 3.1: the header ends on a 32-bit boundary)."""
    raw = write_options(mss=1460, wscale=7, sack_ok=True, ts=(1, 2))
    assert raw == bytes.fromhex("020405b4" "0402080a0000000100000002" "01030307")
    assert parse_options(raw) == {"mss": 1460, "wscale": 7, "sack_ok": True, "ts": (1, 2),
                                  "sack": [], "bad": False}


def test_timestamps_alone_are_nop_nop_ts():
    """RFC 7323 Appendix A: NOP NOP TS, the layout of most data segments."""
    assert write_options(ts=(5, 6)) == bytes.fromhex("0101080a0000000500000006")


def test_sack_permitted_alone_is_padded():
    """RFC 2018 2: kind 4 length 2, padded with two NOPs."""
    raw = write_options(sack_ok=True)
    assert len(raw) == 4 and parse_options(raw)["sack_ok"]


def test_sack_blocks_cut_to_what_fits_with_timestamps():
    """RFC 2018 3: with timestamps, at most 3 blocks fit in 40 bytes."""
    blocks = [(i * 100, i * 100 + 50) for i in range(4)]
    raw = write_options(ts=(1, 1), sack=blocks)
    assert len(raw) == 12 + 4 + 3 * 8 and len(raw) <= 40
    assert parse_options(raw)["sack"] == blocks[:3]
    assert parse_options(write_options(sack=blocks))["sack"] == blocks


def test_wscale_over_14_is_used_as_14():
    """RFC 7323 2.3: a shift count over 14 is used as 14."""
    assert parse_options(bytes([3, 3, 20, 0]))["wscale"] == 14
    assert parse_options(write_options(wscale=20))["wscale"] == 14


@pytest.mark.parametrize("raw", [
    bytes([2, 4, 5]),          # MSS cut short
    bytes([2, 3, 5, 0]),       # MSS with length 3
    bytes([8, 10, 0, 0]),      # timestamps cut short
    bytes([5, 9] + [0] * 7),   # SACK length not 8n + 2
    bytes([1, 1, 0x22]),       # a kind without its length
    bytes([0x22, 1]),          # length under 2
])
def test_malformed_lists_are_flagged(raw):
    """RFC 9293 3.2: option lengths are checked; a fault flags the list."""
    assert parse_options(raw)["bad"]


def test_eol_ends_the_list_and_unknown_kinds_are_skipped():
    """RFC 9293 3.2: End of Option List stops parsing; unknown kinds are skipped by length."""
    raw = bytes([0x22, 4, 9, 9]) + bytes([2, 4, 1, 0]) + bytes([0]) + bytes([3, 3, 5])
    got = parse_options(raw)
    assert got["mss"] == 256 and got["wscale"] is None and not got["bad"]


@given(mss=st.none() | st.integers(0, 65535), wscale=st.none() | st.integers(0, 14),
       sack_ok=st.booleans(), ts=st.none() | st.tuples(u32, u32),
       sack=st.lists(st.tuples(u32, u32), max_size=4))
def test_write_then_parse_round_trips(mss, wscale, sack_ok, ts, sack):
    """Whatever is written parses back the same (SACK blocks up to what fits)."""
    raw = write_options(mss=mss, wscale=wscale, sack_ok=sack_ok, ts=ts, sack=sack)
    assert len(raw) % 4 == 0 and len(raw) <= 40
    got = parse_options(raw)
    assert not got["bad"]
    assert (got["mss"], got["wscale"], got["sack_ok"], got["ts"]) == (mss, wscale, sack_ok, ts)
    assert got["sack"] == sack[:len(got["sack"])]
    fixed = (4 if mss is not None else 0) + (12 if ts else 4 if sack_ok else 0) + \
        (4 if wscale is not None else 0)
    assert len(got["sack"]) == min(len(sack), (40 - fixed - 4) // 8) if sack else not got["sack"]


@given(st.binary(max_size=40))
def test_parse_random_bytes_never_crashes(raw):
    """Any option bytes parse to something (a fault only sets 'bad')."""
    got = parse_options(raw)
    assert len(got["sack"]) <= 4


@given(mss=st.none() | st.integers(0, 65535), wscale=st.none() | st.integers(0, 14),
       sack_ok=st.booleans(), ts=st.none() | st.tuples(u32, u32),
       sack=st.lists(st.tuples(u32, u32), max_size=4))
def test_decoder_reads_written_options(mss, wscale, sack_ok, ts, sack):
    """native/decode.c parses with mos/tcp/options.c: options written for a
    segment come back out of a decoded frame."""
    raw = write_options(mss=mss, wscale=wscale, sack_ok=sack_ok, ts=ts, sack=sack)
    got = opts_of(raw)
    mine = parse_options(raw)
    assert got.get("mss") == mine["mss"] and got.get("wscale") == mine["wscale"]
    assert got.get("ts") == mine["ts"] and bool(got.get("sackok")) == mine["sack_ok"]
    assert got.get("sack", []) == mine["sack"]
