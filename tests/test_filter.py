"""Flow filter expressions (mos/filter.py).

Addresses are from the benchmarking range 198.18.0.0/15 (RFC 2544) and the
documentation range 2001:db8::/32 (RFC 3849).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mos.errors import ConfigError
from mos.filter import FlowFilter, compile_filter


@dataclass
class FakeFlow:
    ipver: int
    client_ip: str
    server_ip: str
    client_port: int
    server_port: int


V4 = FakeFlow(4, "198.18.0.1", "198.19.0.80", 40000, 80)
V6 = FakeFlow(6, "2001:db8::1", "2001:db8:1::80", 40000, 443)


def matches(text: str, flow) -> bool:
    return compile_filter(text)(flow)


# --- primitives and qualifiers ---------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host 198.18.0.1", True),
        ("host 198.19.0.80", True),
        ("host 198.18.0.2", False),
        ("src host 198.18.0.1", True),
        ("src host 198.19.0.80", False),
        ("dst host 198.19.0.80", True),
        ("dst host 198.18.0.1", False),
        ("src or dst host 198.19.0.80", True),
        ("dst or src host 198.18.0.1", True),
        ("src and dst host 198.18.0.1", False),
        ("host 2001:db8::1", False),
    ],
)
def test_host_ipv4_flow_matches_per_qualifier(text, expected):
    assert matches(text, V4) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host 2001:db8::1", True),
        ("host 2001:0db8:0000::0001", True),  # any spelling of the same address
        ("host 2001:db8:1::80", True),
        ("src host 2001:db8::1", True),
        ("src host 2001:db8:1::80", False),
        ("dst host 2001:db8:1::80", True),
        ("src and dst host 2001:db8::1", False),
        ("host 198.18.0.1", False),
    ],
)
def test_host_ipv6_flow_matches_per_qualifier(text, expected):
    assert matches(text, V6) is expected


def test_src_and_dst_host_matches_when_both_ends_are_the_address():
    loop = FakeFlow(4, "198.18.0.9", "198.18.0.9", 1000, 2000)
    assert matches("src and dst host 198.18.0.9", loop)
    assert matches("dst and src host 198.18.0.9", loop)


@pytest.mark.parametrize(
    "text, flow, expected",
    [
        ("net 198.18.0.0/15", V4, True),
        ("net 198.18.0.0/16", V4, True),  # client end only
        ("src net 198.18.0.0/16", V4, True),
        ("dst net 198.18.0.0/16", V4, False),
        ("src and dst net 198.18.0.0/15", V4, True),
        ("src and dst net 198.18.0.0/16", V4, False),
        ("net 198.18.0.0 mask 255.254.0.0", V4, True),
        ("dst net 198.19.0.0 mask 255.255.0.0", V4, True),
        ("net 0.0.0.0/0", V4, True),
        ("net 0.0.0.0/0", V6, False),
        ("net 2001:db8::/32", V6, True),
        ("net 2001:db8::/32", V4, False),
        ("dst net 2001:db8:1::/48", V6, True),
        ("src net 2001:db8:1::/48", V6, False),
        ("src and dst net 2001:db8::/32", V6, True),
        ("net ::/0", V6, True),
    ],
)
def test_net_matches_per_qualifier(text, flow, expected):
    assert matches(text, flow) is expected


@pytest.mark.parametrize(
    "text, flow, expected",
    [
        ("port 80", V4, True),
        ("port 40000", V4, True),
        ("src port 40000", V4, True),
        ("src port 80", V4, False),
        ("dst port 80", V4, True),
        ("src and dst port 80", V4, False),
        ("port 443", V6, True),
        ("dst port 443", V6, True),
        ("src port 443", V6, False),
        ("portrange 80-80", V4, True),
        ("portrange 81-39999", V4, False),
        ("portrange 40000-65535", V4, True),  # inclusive at both ends
        ("dst portrange 0-80", V4, True),
        ("src portrange 0-80", V4, False),
        ("src and dst portrange 0-65535", V6, True),
    ],
)
def test_port_and_portrange_match_per_qualifier(text, flow, expected):
    assert matches(text, flow) is expected


def test_port_bounds_zero_and_65535_are_accepted():
    edge = FakeFlow(4, "198.18.0.1", "198.18.0.2", 0, 65535)
    assert matches("src port 0 and dst port 65535", edge)


@pytest.mark.parametrize(
    "text, v4, v6",
    [("ip", True, False), ("ip6", False, True), ("tcp", True, True), ("not ip", False, True)],
)
def test_protocol_primitives_match_by_ip_version(text, v4, v6):
    assert (matches(text, V4), matches(text, V6)) == (v4, v6)


# --- combinators, precedence, repetition -----------------------------------


@pytest.mark.parametrize(
    "words, symbols",
    [
        ("port 80 and host 198.18.0.1", "port 80 && host 198.18.0.1"),
        ("port 81 or host 198.18.0.1", "port 81 || host 198.18.0.1"),
        ("not port 80", "! port 80"),
        ("not (port 80 or ip6)", "!(port 80||ip6)"),
    ],
)
def test_symbolic_operators_equal_word_operators(words, symbols):
    for flow in (V4, V6):
        assert matches(words, flow) == matches(symbols, flow)
    assert str(compile_filter(words).tree) == str(compile_filter(symbols).tree)


def test_and_binds_tighter_than_or_unlike_bpf():
    # BPF would read ((port 80 or port 443) and host 198.18.0.99): False for V4.
    f = compile_filter("port 80 or port 443 and host 198.18.0.99")
    assert str(f.tree) == "(port 80 or (port 443 and host 198.18.0.99))"
    assert f(V4) is True
    assert matches("(port 80 or port 443) and host 198.18.0.99", V4) is False


def test_not_binds_tighter_than_and():
    f = compile_filter("not port 80 and ip")
    assert str(f.tree) == "(not port 80 and ip)"
    assert f(V4) is False
    assert f(V6) is False
    assert matches("not (port 80 and ip)", V6) is True


def test_double_not_cancels():
    assert matches("not not port 80", V4) is True
    assert matches("!!port 80", V4) is True


def test_parentheses_override_precedence():
    f = compile_filter("(ip6 or port 80) and (src port 40000)")
    assert str(f.tree) == "((ip6 or port 80) and src port 40000)"
    assert f(V4) and f(V6)


@pytest.mark.parametrize(
    "short, long",
    [
        ("port 80 or 443", "port 80 or port 443"),
        ("dst port 80 or 443 or 8080", "dst port 80 or dst port 443 or dst port 8080"),
        ("src host 198.18.0.1 and not 198.18.0.2",
         "src host 198.18.0.1 and not src host 198.18.0.2"),
        ("net 198.18.0.0/24 or 2001:db8::/32", "net 198.18.0.0/24 or net 2001:db8::/32"),
        ("portrange 1-10 or 80-90", "portrange 1-10 or portrange 80-90"),
        ("port 80 and (host 198.18.0.1 or 198.18.0.2)",
         "port 80 and (host 198.18.0.1 or host 198.18.0.2)"),
        ("(port 22) or 80", "port 22 or port 80"),
        ("src or dst port 22 or 80", "port 22 or port 80"),
        ("net 198.18.0.0 mask 255.255.0.0 or 198.19.0.0 mask 255.255.0.0",
         "net 198.18.0.0/16 or net 198.19.0.0/16"),
    ],
)
def test_bare_value_repeats_last_primitive(short, long):
    assert str(compile_filter(short).tree) == str(compile_filter(long).tree)


def test_bare_value_after_protocol_primitive_is_an_error():
    with pytest.raises(ConfigError, match=r"column 18: expected a primitive .* got '22'"):
        compile_filter("port 80 or ip or 22")


# --- the FlowFilter object --------------------------------------------------


def test_flow_filter_keeps_text_and_shows_grouping_in_repr():
    f = compile_filter("port 80 or 443 and not ip6")
    assert isinstance(f, FlowFilter)
    assert f.text == "port 80 or 443 and not ip6"
    assert repr(f) == (
        "<FlowFilter 'port 80 or 443 and not ip6' = (port 80 or (port 443 and not ip6))>"
    )


class CountingFlow:
    """A flow that counts reads of its address attributes."""

    def __init__(self, base: FakeFlow):
        self._base = base
        self.reads = {"client_ip": 0, "server_ip": 0}
        self.ipver = base.ipver
        self.client_port = base.client_port
        self.server_port = base.server_port

    @property
    def client_ip(self):
        self.reads["client_ip"] += 1
        return self._base.client_ip

    @property
    def server_ip(self):
        self.reads["server_ip"] += 1
        return self._base.server_ip


def test_each_address_is_read_at_most_once_per_call():
    f = compile_filter(
        "host 198.18.0.7 or net 198.18.0.0/30 and not host 198.18.0.2"
        " or src and dst host 198.18.0.8"
        " or host 198.18.0.9"
    )
    flow = CountingFlow(FakeFlow(4, "198.18.5.5", "198.18.6.6", 1, 2))
    assert f(flow) is False
    assert flow.reads == {"client_ip": 1, "server_ip": 1}
    f(flow)  # no cache between calls: a Flow object may be reused
    assert flow.reads == {"client_ip": 2, "server_ip": 2}


def test_port_only_filter_never_reads_addresses():
    flow = CountingFlow(V4)
    assert compile_filter("port 80 and ip")(flow)
    assert flow.reads == {"client_ip": 0, "server_ip": 0}


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("port 80 an host x", "column 9: expected 'and', 'or' or end, got 'an'"),
        ("", "column 1: empty expression"),
        ("   ", "column 1: empty expression"),
        ("(port 80", "column 9: expected 'and', 'or' or ')' to close '(' at column 1, got end"),
        ("((port 80) or ip", "column 17: expected 'and', 'or' or ')' to close '(' at column 1,"
                             " got end"),
        ("port 80)", "column 8: unbalanced ')': no '(' to close"),
        ("()", "column 2: empty parentheses"),
        ("(port 80 and", "column 13: expected a primitive, got end ('(' at column 1 is not"
                         " closed)"),
        ("port 80 and", "column 12: expected a primitive (host, net, port, portrange, ip, ip6,"
                        " tcp), got end"),
        ("not", "column 4: expected a primitive (host, net, port, portrange, ip, ip6, tcp),"
                " got end"),
        ("80", "column 1: expected a primitive (host, net, port, portrange, ip, ip6, tcp),"
               " got '80'"),
        ("port 80 443", "column 9: expected 'and', 'or' or end, got '443'"),
        ("port 65536", "column 6: port 65536 out of range 0..65535"),
        ("port 99999999999999999999", "column 6: port 99999999999999999999 out of range 0..65535"),
        ("port -1", "column 6: expected a port number 0..65535, got '-1'"),
        ("port http", "column 6: expected a port number 0..65535, got 'http'"),
        ("port", "column 5: expected a port number 0..65535 after 'port', got end"),
        ("port and", "column 6: expected a port number 0..65535 after 'port', got 'and'"),
        ("portrange 80", "column 11: portrange '80': expected A-B with ports 0..65535"),
        ("portrange 1-70000", "column 11: port 70000 out of range 0..65535"),
        ("portrange 90-80", "column 11: portrange '90-80': start 90 is greater than end 80"),
        ("host", "column 5: expected an address after 'host', got end"),
        ("host 198.18.0.300", "column 6: '198.18.0.300' is not an IPv4 or IPv6 address"),
        ("host 2001:db8:::1", "column 6: '2001:db8:::1' is not an IPv4 or IPv6 address"),
        ("host example.com", "column 6: 'example.com' is not an IPv4 or IPv6 address"),
        ("host 198.18.0.0/15", "column 6: host '198.18.0.0/15': a host takes an address, not a"
                               " network (use 'net 198.18.0.0/15')"),
        ("net 198.18.0.0", "column 5: net '198.18.0.0': expected a network like 198.18.0.0/15"
                           " or 2001:db8::/32 (use 'host 198.18.0.0' for one address)"),
        ("net 198.18.0.0/33", "column 5: net '198.18.0.0/33': prefix length '33' out of range"
                              " 0..32"),
        ("net 198.18.0.0/-1", "column 5: net '198.18.0.0/-1': prefix length '-1' out of range"
                              " 0..32"),
        ("net 2001:db8::/129", "column 5: net '2001:db8::/129': prefix length '129' out of range"
                               " 0..128"),
        ("net 198.18.0.1/15", "column 5: net '198.18.0.1/15': host bits set (did you mean"
                              " 198.18.0.0/15?)"),
        ("net 2001:db8::1/32", "column 5: net '2001:db8::1/32': host bits set (did you mean"
                               " 2001:db8::/32?)"),
        ("net 198.18.0.x/15", "column 5: net '198.18.0.x/15': '198.18.0.x' is not an IPv4 or"
                              " IPv6 address"),
        ("net 198.18.0.0 mask", "column 20: expected a netmask like 255.254.0.0 after 'mask',"
                                " got end"),
        ("net 198.18.0.0 mask 255.0.255.0", "column 21: mask '255.0.255.0' is not contiguous"),
        ("net 198.18.0.0 mask 255.255.0.256", "column 21: mask '255.255.0.256' is not an IPv4"
                                              " netmask"),
        ("net 198.18.0.1 mask 255.254.0.0", "column 5: net '198.18.0.1' mask 255.254.0.0: host"
                                            " bits set (did you mean 198.18.0.0/15?)"),
        ("net 2001:db8:: mask ffff::", "column 5: net '2001:db8::' mask: 'mask' is for IPv4"
                                       " networks only (write 2001:db8::/LENGTH)"),
        ("src", "column 4: expected 'host', 'net', 'port' or 'portrange' after 'src', got end"),
        ("dst 198.18.0.1", "column 5: expected 'host', 'net', 'port' or 'portrange' after 'dst',"
                           " got '198.18.0.1'"),
        ("src or port 80", "column 8: expected 'dst' after 'src or', got 'port'"),
        ("dst and dst port 80", "column 9: expected 'src' after 'dst and', got 'dst'"),
        ("port 80 & ip", "column 9: unexpected '&' (did you mean '&&'?)"),
        ("port 80 | ip", "column 9: unexpected '|' (did you mean '||'?)"),
        ("udp port 53", "column 1: 'udp': mos tracks TCP flows only (use 'tcp', 'ip' or 'ip6')"),
        ("PORT 80", "column 1: expected a primitive (host, net, port, portrange, ip, ip6, tcp),"
                    " got 'PORT'"),
    ],
)
def test_bad_expression_raises_config_error_naming_column_and_token(text, message):
    with pytest.raises(ConfigError) as info:
        compile_filter(text)
    assert str(info.value) == f'filter "{text}": {message}'


def test_non_string_filter_raises_config_error_naming_the_value():
    with pytest.raises(ConfigError, match=r"filter must be a string, not int 80"):
        compile_filter(80)


# --- property: the parser agrees with a direct evaluation of the AST -------
#
# The test builds its own AST as tuples, renders it to text (random operator
# spelling, minimal or extra parentheses, implicit repetition where legal),
# and evaluates the tuple directly with ipaddress.

V4_ADDRS = ["198.18.0.1", "198.18.0.2", "198.18.1.1", "198.19.255.254"]
V6_ADDRS = ["2001:db8::1", "2001:db8::2", "2001:db8:1::1", "2001:db8:ffff::5"]
NETS = [
    "198.18.0.0/15", "198.18.0.0/24", "198.19.0.0/16", "198.18.0.1/32", "0.0.0.0/0",
    "2001:db8::/32", "2001:db8::/64", "2001:db8:1::/48", "2001:db8::1/128", "::/0",
]
PORTS = [0, 22, 80, 443, 8080, 40000, 65535]
DIRS = ["", "src", "dst", "src or dst", "src and dst"]

ports = st.one_of(st.sampled_from(PORTS), st.integers(0, 65535))
leaves = st.one_of(
    st.tuples(st.just("host"), st.sampled_from(DIRS), st.sampled_from(V4_ADDRS + V6_ADDRS)),
    st.tuples(st.just("net"), st.sampled_from(DIRS), st.sampled_from(NETS)),
    st.tuples(st.just("port"), st.sampled_from(DIRS), ports),
    st.tuples(st.just("portrange"), st.sampled_from(DIRS), ports, ports).map(
        lambda t: (t[0], t[1], min(t[2], t[3]), max(t[2], t[3]))
    ),
    st.tuples(st.sampled_from(["ip", "ip6", "tcp"])),
)
trees = st.recursive(
    leaves,
    lambda sub: st.one_of(
        st.tuples(st.just("not"), sub),
        st.tuples(st.just("and"), sub, sub),
        st.tuples(st.just("or"), sub, sub),
    ),
    max_leaves=12,
)


@st.composite
def flows(draw):
    if draw(st.booleans()):
        pool, ipver = V4_ADDRS, 4
    else:
        pool, ipver = V6_ADDRS, 6
    return FakeFlow(ipver, draw(st.sampled_from(pool)), draw(st.sampled_from(pool)),
                    draw(ports), draw(ports))


def reference(node, flow) -> bool:
    op = node[0]
    if op == "not":
        return not reference(node[1], flow)
    if op == "and":
        return reference(node[1], flow) and reference(node[2], flow)
    if op == "or":
        return reference(node[1], flow) or reference(node[2], flow)
    if op in ("ip", "ip6", "tcp"):
        return {"ip": flow.ipver == 4, "ip6": flow.ipver == 6, "tcp": True}[op]
    direction = node[1]
    client = ipaddress.ip_address(flow.client_ip)
    server = ipaddress.ip_address(flow.server_ip)
    if op == "host":
        want = ipaddress.ip_address(node[2])
        ends = (client == want, server == want)
    elif op == "net":
        net = ipaddress.ip_network(node[2])
        ends = (client in net, server in net)
    elif op == "port":
        ends = (flow.client_port == node[2], flow.server_port == node[2])
    else:
        lo, hi = node[2], node[3]
        ends = (lo <= flow.client_port <= hi, lo <= flow.server_port <= hi)
    return {
        "": any(ends), "src or dst": any(ends), "src": ends[0], "dst": ends[1],
        "src and dst": all(ends),
    }[direction]


PREC = {"or": 1, "and": 2, "not": 3}


class Renderer:
    """Turn a tuple AST into filter text; ``last`` follows BPF's textual
    "last primitive" so implicit repetition is only used where it is legal."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.last = None

    def render(self, node) -> str:
        op = node[0]
        if op in PREC:
            return self.combinator(node)
        if op in ("ip", "ip6", "tcp"):
            self.last = None
            return op
        direction, value = node[1], self.value(node)
        if self.last == (direction, op) and self.rng.random() < 0.5:
            return value
        self.last = (direction, op)
        if direction in ("src or dst", "src and dst") and self.rng.random() < 0.5:
            direction = " ".join(reversed(direction.split()))  # dst or src
        if direction and self.rng.random() < 0.3:
            direction = direction.replace(" or ", " || ").replace(" and ", " && ")
        return f"{direction} {op} {value}".strip()

    def value(self, node) -> str:
        op = node[0]
        if op == "portrange":
            return f"{node[2]}-{node[3]}"
        if op == "net" and ":" not in node[2] and self.rng.random() < 0.3:
            net = ipaddress.ip_network(node[2])
            return f"{net.network_address} mask {net.netmask}"
        return str(node[2])

    def child(self, node, parent_prec: int, strict: bool) -> str:
        text = self.render(node)
        prec = PREC.get(node[0], 4)
        if prec < parent_prec or (strict and prec == parent_prec) or self.rng.random() < 0.1:
            return f"({text})"
        return text

    def combinator(self, node) -> str:
        op = node[0]
        if op == "not":
            word = self.rng.choice(["not ", "!", "! "])
            return word + self.child(node[1], PREC["not"], strict=False)
        word = self.rng.choice([op, {"and": "&&", "or": "||"}[op]])
        left = self.child(node[1], PREC[op], strict=False)
        right = self.child(node[2], PREC[op], strict=True)
        return f"{left} {word} {right}"


@settings(max_examples=400, deadline=None)
@given(tree=trees, flow_list=st.lists(flows(), min_size=1, max_size=4), seed=st.integers(0, 2**32))
def test_compiled_filter_agrees_with_direct_evaluation(tree, flow_list, seed):
    text = Renderer(random.Random(seed)).render(tree)
    f = compile_filter(text)
    for flow in flow_list:
        assert f(flow) == reference(tree, flow), (text, f, flow)


@settings(max_examples=200, deadline=None)
@given(tree=trees, seed=st.integers(0, 2**32))
def test_canonical_text_parses_to_the_same_tree(tree, seed):
    f = compile_filter(Renderer(random.Random(seed)).render(tree))
    assert compile_filter(str(f.tree)).tree == f.tree
