"""Suricata rule parsing for the IDS (middleboxes/ids/rules.py, netsets.py)."""

from __future__ import annotations

import glob
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleboxes.ids.netsets import GroupError, Vars, parse_addresses, parse_ports
from middleboxes.ids.rules import (
    ByteExtract,
    ByteJump,
    ByteTest,
    IsDataAt,
    Pcre,
    RuleError,
    load_classification,
    load_rules,
    parse_rule,
)

RULESETS = os.environ.get("MOS_RULESETS", "/work/shared/rulesets")
ET = os.path.join(RULESETS, "et-open-suricata-5.0")


def rule(opts: str, header: str = "alert tcp any any -> any any") -> object:
    return parse_rule(f"{header} ({opts} sid:1;)")


# ---------------------------------------------------------------- groups

def test_address_groups_with_variables_negation_and_nesting():
    v = Vars.defaults()
    home = parse_addresses("$HOME_NET", v)
    assert home.contains("10.0.0.1") and home.contains("192.168.3.4")
    assert not home.contains("8.8.8.8")
    ext = parse_addresses("$EXTERNAL_NET", v)
    assert ext.contains("8.8.8.8") and not ext.contains("10.0.0.1")
    g = parse_addresses("[10.0.0.0/8,![10.1.0.0/16,10.2.3.4],2001:db8::/32]", v)
    assert g.contains("10.9.9.9") and not g.contains("10.1.2.3") and not g.contains("10.2.3.4")
    assert g.contains("2001:db8::1") and not g.contains("2001:db9::1")
    assert parse_addresses("any", v).contains("2001:db8::5")


def test_port_groups_ranges_lists_negation():
    v = Vars.defaults()
    g = parse_ports("[80,443,8000:8080,!8008]", v)
    assert [g.contains(p) for p in (80, 443, 8000, 8008, 8080, 8081)] == \
        [True, True, True, False, True, False]
    assert parse_ports("1024:", v).contains(65535) and not parse_ports("1024:", v).contains(80)
    assert parse_ports(":1023", v).contains(0)
    assert not parse_ports("$SHELLCODE_PORTS", v).contains(80)
    assert parse_ports("$FILE_DATA_PORTS", v).contains(143)


@pytest.mark.parametrize("text,fn,msg", [
    ("$NOPE", parse_addresses, "unknown address variable $NOPE"),
    ("[10.0.0.0/8", parse_addresses, "unbalanced"),
    ("10.0.0.300", parse_addresses, "is not an address"),
    ("!any", parse_addresses, "matches nothing"),
    ("70000", parse_ports, "out of range"),
    ("90:80", parse_ports, "empty"),
    ("[80,,81]", parse_ports, "empty element"),
    ("http", parse_ports, "not a port number"),
])
def test_bad_groups_name_the_bad_part(text, fn, msg):
    with pytest.raises(GroupError, match=re.escape(msg)):
        fn(text, Vars.defaults())


def test_variables_that_refer_to_themselves_are_refused():
    v = Vars.defaults()
    v.addresses["A"] = "[$B]"
    v.addresses["B"] = "$A"
    with pytest.raises(GroupError, match="refers to itself"):
        parse_addresses("$A", v)


def test_vars_from_suricata_yaml_layout():
    v = Vars.from_mapping({"vars": {"address-groups": {"HOME_NET": "[198.18.0.0/15]"},
                                    "port-groups": {"HTTP_PORTS": "[80,8080]"}}})
    assert parse_addresses("$HOME_NET", v).contains("198.19.1.1")
    assert not parse_addresses("$HOME_NET", v).contains("10.0.0.1")
    assert parse_ports("$HTTP_PORTS", v).contains(8080)
    assert parse_ports("$SSH_PORTS", v).contains(22)     # defaults kept


# ---------------------------------------------------------------- options

def test_content_hex_escapes_and_modifiers():
    r = rule('msg:"a \\"quoted\\" msg"; content:"GET|20 2f|a\\;b\\\\"; nocase; depth:10; '
             'offset:0; content:!"x"; distance:0; within:5; fast_pattern;')
    c1, c2 = r.contents()
    assert c1.pattern == b"GET /a;b\\" and c1.nocase and c1.depth == 10 and c1.offset == 0
    assert c2.pattern == b"x" and c2.negated and c2.distance == 0 and c2.within == 5
    assert c2.fast_pattern and not c1.fast_pattern
    assert r.msg == 'a "quoted" msg'


def test_startswith_endswith_and_fast_pattern_forms():
    r = rule('content:"abc"; startswith; content:"xyz"; endswith; fast_pattern:1,2;')
    a, b = r.contents()
    assert a.startswith and a.offset == 0 and a.depth == 3
    assert b.endswith and b.fast_pattern_chop == (1, 2)
    assert rule('content:"abc"; fast_pattern:only;').contents()[0].fast_pattern_only


def test_pcre_with_flags_compiles_on_bytes():
    r = rule('content:"a"; pcre:"/^b[0-9]+\\x{41}/Rsi";')
    p = r.matches[1]
    assert isinstance(p, Pcre) and p.relative and "s" in p.flags
    assert p.compiled.match(b"B12A") and not p.compiled.match(b"bA")
    assert rule('pcre:!"/x/";').matches[0].negated


def test_byte_keywords():
    r = rule('content:"|00|"; byte_extract:2,0,len,relative,little; '
             'byte_test:4,>,len,2,relative,string,hex; byte_jump:2,0,relative,multiplier 2,'
             'post_offset -1,align; isdataat:!10,relative;')
    be, bt, bj, ida = r.matches[1:]
    assert isinstance(be, ByteExtract) and be.name == "len" and not be.big_endian
    assert isinstance(bt, ByteTest) and bt.value == "len" and bt.string == "hex" and bt.op == ">"
    assert isinstance(bj, ByteJump) and bj.multiplier == 2 and bj.post_offset == -1 and bj.align
    assert isinstance(ida, IsDataAt) and ida.negated and ida.relative and ida.offset == 10
    assert rule("byte_test:4,!&,0xFFFFFFFF,0;").matches[0].negated


def test_flow_flowbits_dsize_flags_stream_size_threshold():
    r = rule("flow:established,to_server,only_stream; flowbits:isset,a|b; flowbits:noalert; "
             "dsize:10<>20; flags:S+,12; stream_size:server,>,100; "
             "threshold:type limit, track by_src, count 1, seconds 60;")
    assert r.flow.established and r.flow.to_server and r.flow.only_stream
    assert r.flowbits[0].names == ("a", "b") and r.flowbits[0].any_of and r.noalert
    assert r.dsize.test(15) and not r.dsize.test(20)
    assert r.flags.test(0x12) and r.flags.test(0x02 | 0x40) and not r.flags.test(0x10)
    assert r.stream_size[0] == "server" and r.stream_size[1].test(101)
    assert r.threshold.kind == "limit" and r.threshold.seconds == 60.0
    assert not r.is_stream    # dsize makes it a packet rule


def test_header_parts():
    r = parse_rule('drop tcp [10.0.0.0/8, 192.168.0.0/16] ![1:1023] <> $HOME_NET $HTTP_PORTS '
                   '(msg:"m"; sid:7; rev:3; gid:2; classtype:trojan-activity; priority:2; '
                   'metadata:former_category MALWARE, created_at 2020_01_01; '
                   'reference:url,example.com; target:dest_ip;)')
    assert (r.action, r.proto, r.bidirectional, r.sid, r.rev, r.gid) == \
        ("drop", "tcp", True, 7, 3, 2)
    assert r.src.contains("192.168.1.1") and not r.sport.contains(80) and r.sport.contains(8080)
    assert r.metadata == ["former_category MALWARE", "created_at 2020_01_01"]
    assert r.priority == 2 and r.target == "dest_ip" and r.references == ["url,example.com"]


@pytest.mark.parametrize("text,reason", [
    ('alert smtp any any -> any any (content:"a"; sid:1;)', "application-layer parser"),
    ('alert tls any any -> any any (tls.version:1.9; sid:1;)', "tls.version: '1.9'"),
    ('alert tls any any -> any any (tls.fingerprint:"ab:cd"; sid:1;)', "SHA-1 fingerprint"),
    ('alert http any any => any any (http.uri; content:"a"; sid:1;)', "TLS rules only"),
    ('alert tls any any -> any any (tls.sni; content:"a"; http.uri; content:"b"; sid:1;)',
     "HTTP and TLS buffers together"),
    ('alert http any any -> any any (http.uri; sid:1;)', "has no option after it"),
    ('alert http any any -> any any (content:"a"; http_uri; http_header; sid:1;)',
     "already in another buffer"),
    ('alert http any any -> any any (http.uri; content:"a"; xor:"0d"; sid:1;)', "transform"),
    ('alert http any any -> any any (http.uri; content:"a"; to_lowercase; sid:1;)',
     "after the buffer's first match"),
    ('alert http any any -> any any (bsize:10; sid:1;)', "bsize without a sticky buffer"),
    ('alert udp any any -> any any (content:"a"; sid:1;)', "mos tracks TCP only"),
    ('alert tcp any any <- any any (sid:1;)', "'<-' does not exist"),
    ('log tcp any any -> any any (sid:1;)', "unknown action 'log'"),
    ('alert tcp any any -> any any (content:"a";)', "no sid"),
    ('alert tcp any any -> any any (nocase; sid:1;)', "nocase without a content"),
    ('alert tcp any any -> any any (content:"abcd"; depth:2; sid:1;)', "shorter than"),
    ('alert tcp any any -> any any (content:"a"; depth:4; distance:1; sid:1;)', "together"),
    ('alert tcp any any -> any any (content:"a|4|"; sid:1;)', "bad hex"),
    ('alert tcp any any -> any any (content:"a\\x"; sid:1;)', "bad escape"),
    ('alert tcp any any -> any any (smtp.helo; content:"a"; sid:1;)', "application-layer"),
    ('alert tcp any any -> any any (content:"a"; to_lowercase; sid:1;)', "transform"),
    ('alert tcp any any -> any any (pcre:"/a/UH"; sid:1;)', "more than one HTTP buffer"),
    ('alert tcp any any -> any any (pcre:"/(/"; sid:1;)', "pcre:"),
    ('alert tcp any any -> any any (frobnicate:1; sid:1;)', "unknown or unsupported keyword"),
    ('alert tcp any any -> any any (flow:to_server,to_client; sid:1;)', "together"),
    ('alert tcp any any -> any any (flowbits:set,a|b; sid:1;)', "takes one name"),
    ('alert tcp any any -> any any (byte_test:4,~,1,0; sid:1;)', "unknown operator"),
    ('alert tcp any any -> any any (byte_test:4,>,nope,0; sid:1;)', "byte_extract variable"),
    ('alert tcp any any -> any any (msg:"unterminated; sid:1;)', "unterminated"),
    ('alert tcp $NOPE any -> any any (sid:1;)', "unknown address variable"),
    ('alert tcp any any -> any any (sid:1)', "does not end with ';'"),
    ('alert tcp any any -> any any sid:1;', "not a rule"),
])
def test_refusals_say_why(text, reason):
    with pytest.raises(RuleError) as ei:
        parse_rule(text)
    assert reason in ei.value.reason


def test_a_file_with_bad_rules_loads_the_rest_and_reports_file_line_reason(tmp_path):
    p = tmp_path / "mixed.rules"
    p.write_text(
        "# a comment\n"
        'alert tcp any any -> any any (msg:"ok one"; content:"a"; sid:10;)\n'
        '# alert tcp any any -> any any (msg:"disabled"; sid:11;)\n'
        'alert tcp any any -> any any (msg:"broken"; content:"a" sid:12;)\n'
        "\n"
        'alert smtp any any -> any any (msg:"app"; content:"b"; sid:13;)\n'
        'alert tcp any any -> any any (msg:"continued"; \\\n'
        '    content:"c"; sid:14;)\n'
        'alert tcp any any -> any any (msg:"dup"; sid:10;)\n'
        "garbage line\n")
    rs = load_rules(str(p))
    assert [r.sid for r in rs.rules] == [10, 14]
    assert rs.rules[1].line == 7 and rs.disabled == 1
    got = [(r.line, r.sid) for r in rs.refused]
    assert got == [(4, 12), (6, 13), (9, 10), (10, None)]
    assert all(r.path == str(p) for r in rs.refused)
    assert "duplicate sid 10 (first at" in rs.refused[2].reason
    assert str(rs.refused[1]).startswith(f"{p}:6 (sid 13): protocol 'smtp'")


def test_missing_file_is_one_refusal_not_a_crash(tmp_path):
    rs = load_rules(str(tmp_path / "nope.rules"))
    assert rs.rules == [] and "cannot read" in rs.refused[0].reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_garbage_is_refused_never_crashes(text):
    try:
        parse_rule("alert tcp any any -> any any (" + text + ")")
    except RuleError:
        pass
    try:
        parse_rule(text)
    except RuleError:
        pass


# ---------------------------------------------------------------- ET Open

def test_et_open_tcp_rules_load():
    """The public ET Open ruleset: almost every rule with a tcp header loads
    (what is refused names its reason), the classification file loads, and
    nothing in the whole set crashes the loader."""
    if not os.path.isdir(ET):
        pytest.skip(f"{ET} not present")
    files = [f for f in sorted(glob.glob(os.path.join(ET, "*.rules"))) if "deleted" not in f]
    classes = load_classification(os.path.join(ET, "classification.config"))
    rs = load_rules(files, classes=classes)
    total = {}
    for f in files:
        with open(f, errors="replace") as fh:
            for line in fh:
                m = re.match(r"(alert|drop|reject|pass)\s+(\S+)", line)
                if m:
                    total[m.group(2)] = total.get(m.group(2), 0) + 1
    loaded = sum(1 for r in rs.rules if r.proto in ("tcp", "tcp-pkt", "tcp-stream"))
    want = sum(total.get(p, 0) for p in ("tcp", "tcp-pkt", "tcp-stream"))
    assert want > 2500
    assert loaded / want >= 0.99, rs.summary()
    # HTTP and TLS rules (sticky buffers, http_* modifiers, tls.*, ja3*) load
    # too, and of all the TCP-carried rules (tcp and the application
    # protocols over TCP; DNS is counted out, its rules are mostly for UDP)
    # 98.7 % do (the project's goal: 95 %)
    http = sum(1 for r in rs.rules if r.proto == "http")
    assert total["http"] > 14000 and http / total["http"] >= 0.99
    carried = ("tcp", "tcp-pkt", "tcp-stream", "http", "http1", "http2", "tls", "ssl", "ssh",
               "smtp", "ftp", "ftp-data", "smb", "dcerpc", "imap", "pop3", "krb5", "nfs", "rdp",
               "rfb", "mqtt", "modbus", "dnp3", "enip", "pgsql", "telnet", "websocket", "ldap")
    got = sum(1 for r in rs.rules if r.proto in carried)
    assert got / sum(total.get(p, 0) for p in carried) >= 0.95
    tls = sum(1 for r in rs.rules if r.proto in ("tls", "ssl"))
    assert total["tls"] > 2000 and tls / total["tls"] >= 0.99
    assert all(r.reason for r in rs.refused)
    assert len(rs.rules) + len(rs.refused) == sum(total.values())


def test_module_examples_run():
    import doctest

    import middleboxes.ids.netsets as netsets
    import middleboxes.ids.rules as rules
    for mod in (netsets, rules):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0, mod.__name__


@settings(max_examples=200, deadline=None)
@given(inc=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=8),
       exc=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=4),
       probes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20), any_=st.booleans())
def test_address_group_lookup_agrees_with_the_plain_definition(inc, exc, probes, any_):
    """The interval lookup (one bisect) answers as membership in the
    networks does, for overlapping, nested and adjacent networks."""
    import ipaddress

    from middleboxes.ids.netsets import AddressGroup
    net = lambda a, p: ipaddress.ip_network((a, p), strict=False)  # noqa: E731
    g = AddressGroup(tuple(net(a, p) for a, p in inc), tuple(net(a, p) for a, p in exc), any_)
    for x in probes + [int(n.network_address) for n in g.include + g.exclude]:
        a = ipaddress.ip_address(x)
        want = (not any(a in n for n in g.exclude)
                and (g.any_ or not g.include or any(a in n for n in g.include)))
        assert g.contains(str(a)) == want, (g, a)
