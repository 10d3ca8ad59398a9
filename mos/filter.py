"""Flow filter expressions: a small BPF-like language, evaluated once per flow.

A Monitor with a filter only sees the flows the filter admits. The filter is
checked once, when the flow starts, against its two ends::

    >>> from mos.filter import compile_filter
    >>> f = compile_filter("dst port 80 or 443 and not src net 198.18.0.0/24")
    >>> print(f.tree)
    (dst port 80 or (dst port 443 and not src net 198.18.0.0/24))
    >>> compile_filter("port 80 or 443 and ip6")
    <FlowFilter 'port 80 or 443 and ip6' = (port 80 or (port 443 and ip6))>

Grammar (keywords are lower case)::

    expr      := or_expr
    or_expr   := and_expr { ("or" | "||") and_expr }
    and_expr  := not_expr { ("and" | "&&") not_expr }
    not_expr  := ("not" | "!") not_expr | "(" expr ")" | primitive
    primitive := [dir] "host" ADDR            an IPv4 or IPv6 address
               | [dir] "net" CIDR             198.18.0.0/15, 2001:db8::/32
               | [dir] "net" ADDR "mask" MASK IPv4 only: net 198.18.0.0 mask 255.254.0.0
               | [dir] "port" N               0..65535
               | [dir] "portrange" A-B        inclusive, A <= B
               | "ip" | "ip6"                 the flow is IPv4 / IPv6
               | "tcp"                        always true: every flow is TCP
               | VALUE                        implicit repetition, see below
    dir       := "src" | "dst" | "src or dst" | "dst or src" | "src and dst" | "dst and src"

Directions: ``src`` is the client end of the flow (the side that sent the
first SYN, or the side the core decided is the client on a mid-stream
pick-up), ``dst`` the server end. ``src or dst`` (and no direction at all)
match either end; ``src and dst`` need both ends to match.

Precedence: ``not`` binds tightest, then ``and``, then ``or``, the usual
boolean precedence. **This differs from BPF**, where ``and`` and ``or`` have
equal precedence and group left to right: ``port 80 or port 443 and host X``
here means ``port 80 or (port 443 and host X)``; tcpdump reads it as
``(port 80 or port 443) and host X``. Use parentheses when in doubt; the
repr of a compiled filter shows the grouping.

Implicit repetition (as in BPF): a bare value where a primitive is expected
reuses the direction and kind of the last valued primitive, so
``port 80 or 443`` is ``port 80 or port 443`` and ``src host A and not B``
is ``src host A and not src host B``. ``ip``, ``ip6`` and ``tcp`` end such a
run.

Addresses are parsed once, here; evaluating a filter parses the flow's two
addresses at most once each, and only if an address primitive is reached.
Mistakes raise :class:`mos.errors.ConfigError` naming the filter, the
column (1-based) and the offending token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, NoReturn, Optional, Union

from mos.errors import ConfigError

__all__ = ["FlowFilter", "compile_filter"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Direction qualifiers. "either" is the default and also "src or dst".
SRC, DST, EITHER, BOTH = "src", "dst", "either", "both"
_DIR_TEXT = {SRC: "src ", DST: "dst ", EITHER: "", BOTH: "src and dst "}

_KINDS = ("host", "net", "port", "portrange")
_PROTOS = {"ip": 4, "ip6": 6, "tcp": None}
_NOT_TRACKED = ("udp", "icmp", "icmp6", "sctp", "arp", "rarp", "ether", "vlan")
_KEYWORDS = frozenset(
    ("and", "or", "not", "src", "dst", "mask") + _KINDS + tuple(_PROTOS) + _NOT_TRACKED
)
_PORT_MAX = 65535
_DIGITS = re.compile(r"[0-9]+\Z")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)\Z")
_OPERATORS = {"&&": "and", "||": "or", "!": "not", "(": "(", ")": ")"}


# --------------------------------------------------------------------------
# The tree. Each node has match(flow, ends) and a canonical str().


class _Ends:
    """The flow's two addresses as ipaddress objects, parsed on first use."""

    __slots__ = ("flow", "_client", "_server")

    def __init__(self, flow: Any):
        self.flow = flow
        self._client: Optional[IPAddress] = None
        self._server: Optional[IPAddress] = None

    def client(self) -> IPAddress:
        if self._client is None:
            self._client = ipaddress.ip_address(self.flow.client_ip)
        return self._client

    def server(self) -> IPAddress:
        if self._server is None:
            self._server = ipaddress.ip_address(self.flow.server_ip)
        return self._server


class _EndTest:
    """A primitive tested against the client end, the server end or both,
    per its direction; subclasses define client_ok and server_ok."""

    __slots__ = ()

    def match(self, flow: Any, ends: _Ends) -> bool:
        d = self.direction
        if d == SRC:
            return self.client_ok(flow, ends)
        if d == DST:
            return self.server_ok(flow, ends)
        if d == EITHER:
            return self.client_ok(flow, ends) or self.server_ok(flow, ends)
        return self.client_ok(flow, ends) and self.server_ok(flow, ends)


@dataclass(frozen=True, slots=True)
class Host(_EndTest):
    direction: str
    addr: IPAddress

    def client_ok(self, flow: Any, ends: _Ends) -> bool:
        return ends.client() == self.addr

    def server_ok(self, flow: Any, ends: _Ends) -> bool:
        return ends.server() == self.addr

    def __str__(self) -> str:
        return f"{_DIR_TEXT[self.direction]}host {self.addr}"


@dataclass(frozen=True, slots=True)
class Net(_EndTest):
    direction: str
    net: IPNetwork

    def client_ok(self, flow: Any, ends: _Ends) -> bool:
        return ends.client() in self.net

    def server_ok(self, flow: Any, ends: _Ends) -> bool:
        return ends.server() in self.net

    def __str__(self) -> str:
        return f"{_DIR_TEXT[self.direction]}net {self.net}"


@dataclass(frozen=True, slots=True)
class PortRange(_EndTest):
    """``port N`` is PortRange(dir, N, N)."""

    direction: str
    lo: int
    hi: int

    def client_ok(self, flow: Any, ends: _Ends) -> bool:
        return self.lo <= flow.client_port <= self.hi

    def server_ok(self, flow: Any, ends: _Ends) -> bool:
        return self.lo <= flow.server_port <= self.hi

    def __str__(self) -> str:
        d = _DIR_TEXT[self.direction]
        return f"{d}port {self.lo}" if self.lo == self.hi else f"{d}portrange {self.lo}-{self.hi}"


@dataclass(frozen=True, slots=True)
class Proto:
    """``ip`` (ipver 4), ``ip6`` (ipver 6) or ``tcp`` (ipver None: always true)."""

    ipver: Optional[int]

    def match(self, flow: Any, ends: _Ends) -> bool:
        return self.ipver is None or flow.ipver == self.ipver

    def __str__(self) -> str:
        return {4: "ip", 6: "ip6", None: "tcp"}[self.ipver]


@dataclass(frozen=True, slots=True)
class Not:
    arg: Any

    def match(self, flow: Any, ends: _Ends) -> bool:
        return not self.arg.match(flow, ends)

    def __str__(self) -> str:
        return f"not {self.arg}"


@dataclass(frozen=True, slots=True)
class And:
    left: Any
    right: Any

    def match(self, flow: Any, ends: _Ends) -> bool:
        return self.left.match(flow, ends) and self.right.match(flow, ends)

    def __str__(self) -> str:
        return f"({self.left} and {self.right})"


@dataclass(frozen=True, slots=True)
class Or:
    left: Any
    right: Any

    def match(self, flow: Any, ends: _Ends) -> bool:
        return self.left.match(flow, ends) or self.right.match(flow, ends)

    def __str__(self) -> str:
        return f"({self.left} or {self.right})"


Node = Union[Host, Net, PortRange, Proto, Not, And, Or]


class FlowFilter:
    """A compiled filter: call it with a flow to get True or False.

    ``text`` is the expression as written; ``tree`` the parsed tree, whose
    ``str()`` is fully parenthesised (the repr shows it).
    """

    __slots__ = ("text", "tree")

    def __init__(self, text: str, tree: Node):
        self.text = text
        self.tree = tree

    def __call__(self, flow: Any) -> bool:
        return self.tree.match(flow, _Ends(flow))

    def __repr__(self) -> str:
        return f"<FlowFilter {self.text!r} = {self.tree}>"


def compile_filter(text: str) -> FlowFilter:
    """Parse ``text`` into a :class:`FlowFilter`; raises ConfigError naming
    the column and token of the first mistake."""
    if not isinstance(text, str):
        raise ConfigError(f"filter must be a string, not {type(text).__name__} {text!r}")
    return FlowFilter(text, _Parser(text).parse())


# --------------------------------------------------------------------------
# Tokens and parser.


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "and", "or", "not", "(", ")", "end"
    text: str
    column: int  # 1-based

    def shown(self) -> str:
        return "end" if self.kind == "end" else repr(self.text)


_WORD_STOP = set(" \t\r\n()!&|")


def _tokenize(text: str, fail) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        two = text[i:i + 2]
        if two in ("&&", "||"):
            tokens.append(_Token(_OPERATORS[two], two, i + 1))
            i += 2
            continue
        if c in "!()":
            tokens.append(_Token(_OPERATORS[c], c, i + 1))
            i += 1
            continue
        if c in "&|":
            fail(i + 1, f"unexpected {c!r} (did you mean {c * 2!r}?)")
        j = i
        while j < n and text[j] not in _WORD_STOP and not text[j].isspace():
            j += 1
        word = text[i:j]
        kind = word if word in ("and", "or", "not") else "word"
        tokens.append(_Token(kind, word, i + 1))
        i = j
    tokens.append(_Token("end", "", n + 1))
    return tokens


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text, self.fail)
        self.pos = 0
        # (direction, kind) of the last valued primitive, for implicit repetition
        self.last: Optional[tuple[str, str]] = None

    def fail(self, column: int, message: str) -> NoReturn:
        raise ConfigError(f'filter "{self.text}": column {column}: {message}')

    def fail_at(self, tok: _Token, message: str) -> NoReturn:
        self.fail(tok.column, message)

    @property
    def tok(self) -> _Token:
        return self.toks[self.pos]

    def peek(self, ahead: int = 1) -> _Token:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def advance(self) -> _Token:
        tok = self.toks[self.pos]
        if tok.kind != "end":
            self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "end":
            self.fail(1, "empty expression")
        tree = self.or_expr(closing=None)
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                self.fail_at(self.tok, "unbalanced ')': no '(' to close")
            self.fail_at(self.tok, f"expected 'and', 'or' or end, got {self.tok.shown()}")
        return tree

    def or_expr(self, closing: Optional[_Token]) -> Node:
        node = self.and_expr(closing)
        while self.tok.kind == "or":
            self.advance()
            node = Or(node, self.and_expr(closing))
        return node

    def and_expr(self, closing: Optional[_Token]) -> Node:
        node = self.not_expr(closing)
        while self.tok.kind == "and":
            self.advance()
            node = And(node, self.not_expr(closing))
        return node

    def not_expr(self, closing: Optional[_Token]) -> Node:
        tok = self.tok
        if tok.kind == "not":
            self.advance()
            return Not(self.not_expr(closing))
        if tok.kind == "(":
            self.advance()
            if self.tok.kind == ")":
                self.fail_at(self.tok, "empty parentheses")
            inner = self.or_expr(closing=tok)
            if self.tok.kind != ")":
                self.fail_at(
                    self.tok,
                    f"expected 'and', 'or' or ')' to close '(' at column {tok.column},"
                    f" got {self.tok.shown()}",
                )
            self.advance()
            return inner
        return self.primitive(closing)

    def primitive(self, closing: Optional[_Token]) -> Node:
        tok = self.tok
        if tok.kind == "end" and closing is not None:
            self.fail_at(tok, f"expected a primitive, got end ('(' at column {closing.column}"
                              " is not closed)")
        if tok.kind != "word":
            self.fail_at(tok, f"expected a primitive (host, net, port, portrange, ip, ip6,"
                              f" tcp), got {tok.shown()}")
        word = tok.text
        if word in _PROTOS:
            self.advance()
            self.last = None
            return Proto(_PROTOS[word])
        if word in _NOT_TRACKED:
            self.fail_at(tok, f"{word!r}: mos tracks TCP flows only (use 'tcp', 'ip' or 'ip6')")
        if word in ("src", "dst"):
            direction = self.direction()
            kind_tok = self.tok
            if kind_tok.kind != "word" or kind_tok.text not in _KINDS:
                self.fail_at(kind_tok, f"expected 'host', 'net', 'port' or 'portrange' after"
                                       f" {word!r}, got {kind_tok.shown()}")
            self.advance()
            return self.valued(direction, kind_tok)
        if word in _KINDS:
            self.advance()
            return self.valued(EITHER, tok)
        if word in _KEYWORDS or self.last is None:
            self.fail_at(tok, f"expected a primitive (host, net, port, portrange, ip, ip6,"
                              f" tcp), got {tok.shown()}")
        # implicit repetition: "port 80 or 443"
        direction, kind = self.last
        return self.value(direction, kind, tok)

    def direction(self) -> str:
        """Parse src | dst | src or dst | src and dst (either order)."""
        first = self.advance().text
        nxt, after = self.tok, self.peek()
        other = "dst" if first == "src" else "src"
        if nxt.kind in ("and", "or"):
            if after.kind == "word" and after.text == other:
                self.advance()
                self.advance()
                return EITHER if nxt.kind == "or" else BOTH
            self.fail_at(after, f"expected {other!r} after '{first} {nxt.text}',"
                                f" got {after.shown()}")
        return SRC if first == "src" else DST

    def valued(self, direction: str, kind_tok: _Token) -> Node:
        val = self.tok
        if val.kind != "word" or val.text in _KEYWORDS:
            what = {
                "host": "an address",
                "net": "a network like 198.18.0.0/15",
                "port": f"a port number 0..{_PORT_MAX}",
                "portrange": "a port range like 8000-8080",
            }[kind_tok.text]
            self.fail_at(val, f"expected {what} after {kind_tok.text!r}, got {val.shown()}")
        return self.value(direction, kind_tok.text, val)

    def value(self, direction: str, kind: str, tok: _Token) -> Node:
        """Consume the value token ``tok`` of a ``kind`` primitive."""
        self.advance()
        self.last = (direction, kind)
        if kind == "host":
            return Host(direction, self.address(tok))
        if kind == "net":
            return Net(direction, self.network(tok))
        if kind == "port":
            port = self.port(tok, tok.text)
            return PortRange(direction, port, port)
        m = _RANGE.match(tok.text)
        if not m:
            self.fail_at(tok, f"portrange {tok.text!r}: expected A-B with ports 0..{_PORT_MAX}")
        lo, hi = self.port(tok, m.group(1)), self.port(tok, m.group(2))
        if lo > hi:
            self.fail_at(tok, f"portrange {tok.text!r}: start {lo} is greater than end {hi}")
        return PortRange(direction, lo, hi)

    def port(self, tok: _Token, text: str) -> int:
        if not _DIGITS.match(text):
            self.fail_at(tok, f"expected a port number 0..{_PORT_MAX}, got {text!r}")
        n = int(text)
        if n > _PORT_MAX:
            self.fail_at(tok, f"port {n} out of range 0..{_PORT_MAX}")
        return n

    def address(self, tok: _Token) -> IPAddress:
        if "/" in tok.text:
            self.fail_at(tok, f"host {tok.text!r}: a host takes an address, not a network"
                              f" (use 'net {tok.text}')")
        try:
            return ipaddress.ip_address(tok.text)
        except ValueError:
            self.fail_at(tok, f"{tok.text!r} is not an IPv4 or IPv6 address")

    def network(self, tok: _Token) -> IPNetwork:
        text = tok.text
        if self.tok.kind == "word" and self.tok.text == "mask":
            self.advance()
            mask_tok = self.tok
            if mask_tok.kind != "word" or mask_tok.text in _KEYWORDS:
                self.fail_at(mask_tok, f"expected a netmask like 255.254.0.0 after 'mask',"
                                       f" got {mask_tok.shown()}")
            self.advance()
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                self.fail_at(tok, f"net {text!r} mask: {text!r} is not an IPv4 address"
                                  " (with 'mask', give the address without /LENGTH)")
            if addr.version != 4:
                self.fail_at(tok, f"net {text!r} mask: 'mask' is for IPv4 networks only"
                                  f" (write {text}/LENGTH)")
            try:
                mask = ipaddress.IPv4Address(mask_tok.text)
            except ValueError:
                self.fail_at(mask_tok, f"mask {mask_tok.text!r} is not an IPv4 netmask")
            bits = int(mask)
            inverted = ~bits & 0xFFFFFFFF
            if inverted & (inverted + 1):  # 1s then 0s only
                self.fail_at(mask_tok, f"mask {mask_tok.text!r} is not contiguous")
            plen = 32 - inverted.bit_length()
            return self.checked_network(tok, f"{addr}/{plen}", f"net {text!r} mask {mask}", plen)
        if "/" not in text:
            self.fail_at(tok, f"net {text!r}: expected a network like 198.18.0.0/15 or"
                              f" 2001:db8::/32 (use 'host {text}' for one address)")
        addr_text, _, plen_text = text.partition("/")
        try:
            addr = ipaddress.ip_address(addr_text)
        except ValueError:
            self.fail_at(tok, f"net {text!r}: {addr_text!r} is not an IPv4 or IPv6 address")
        width = addr.max_prefixlen
        if not _DIGITS.match(plen_text) or int(plen_text) > width:
            self.fail_at(tok, f"net {text!r}: prefix length {plen_text!r} out of range"
                              f" 0..{width}")
        return self.checked_network(tok, text, f"net {text!r}", int(plen_text))

    def checked_network(self, tok: _Token, spec: str, shown: str, plen: int) -> IPNetwork:
        try:
            return ipaddress.ip_network(spec, strict=True)
        except ValueError:
            base = ipaddress.ip_network(spec, strict=False)
            self.fail_at(tok, f"{shown}: host bits set (did you mean"
                              f" {base.network_address}/{plen}?)")
