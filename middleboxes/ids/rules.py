"""Suricata rules: the subset mos's IDS runs, parsed into plain objects.

A rule file loads rule by rule: a rule outside the subset is refused with
its file, line and the reason, and the others load (``load_rules``).  The
objects here carry what a matcher needs and nothing about how it matches.

>>> rs = parse_rule('alert tcp any any -> $HOME_NET 80 (msg:"x"; flow:to_server,established; '
...                 'content:"GET|20|"; depth:4; content:"/admin"; distance:0; sid:1; rev:2;)')
>>> rs.sid, rs.action, [c.pattern for c in rs.contents()], rs.flow.to_server
(1, 'alert', [b'GET ', b'/admin'], True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from .netsets import AddressGroup, GroupError, PortGroup, Vars, parse_addresses, parse_ports

ACTIONS = ("alert", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth", "pass")
PROTOCOLS = ("tcp", "tcp-pkt", "tcp-stream", "ip", "http", "http1", "tls", "ssl")
# header protocols of application layers mos does not parse yet
APP_PROTOCOLS = ("http2", "dns", "smtp", "ftp", "ftp-data", "smb",
                 "dcerpc", "ssh", "imap", "pop3", "krb5", "nfs", "ntp", "dhcp", "snmp", "sip",
                 "rdp", "rfb", "mqtt", "modbus", "dnp3", "enip", "ike", "ikev2", "tftp",
                 "quic", "pgsql", "telnet", "websocket", "ldap", "bittorrent-dht")

# sticky buffers and content modifiers that need an application-layer parser
APP_KEYWORDS = re.compile(
    r"^(http[._].*|file[._]data|file\..*|filename|fileext|filemagic|filestore|filesize|"
    r"filemd5|filesha1|filesha256|tls[._].*|ja3[._].*|ja3s[._].*|ja4.*|ssl_.*|dns[._].*|"
    r"smb[._].*|krb5[._].*|ssh[._].*|sip[._].*|snmp[._].*|uricontent|urilen|dce_.*|"
    r"app-layer-.*|smtp[._].*|ftp[._].*|ftpbounce|ftpdata_command|quic[._].*|rfb[._].*|"
    r"mqtt[._].*|modbus|dnp3_.*|enip_.*|cip_.*|ike[._].*|nfs_.*|tftp[._].*|pgsql[._].*|"
    r"email[._].*|base64_.*|asn1|bsize|ldap[._].*|websocket[._].*|sni|cert.*)$")

# stream-event names (Suricata's stream-events.rules) that mos raises, and the
# ERROR reason behind each
STREAM_EVENTS = {
    "reassembly_seq_gap": "GAP",
    "reassembly_overlap_different_data": "OVERLAP_DIFF",
    "pkt_invalid_timestamp": "PAWS",
    "est_packet_out_of_window": "OUT_OF_WINDOW",
    "reassembly_memcap": "MEMCAP",
    # mos's own: urgent data (receivers differ on keeping the byte inline)
    "urgent_data": "URGENT",
}

# transforms act on sticky buffers (application layer)
TRANSFORMS = ("to_lowercase", "to_uppercase", "strip_whitespace", "compress_whitespace",
              "dotprefix", "url_decode", "to_sha256", "to_md5", "to_sha1", "pcrexform",
              "xor", "header_lowercase", "strip_pseudo_headers", "from_base64")
#: transforms mos applies (middleboxes/ids/buffers.py); the rest are refused
TRANSFORMS_DONE = ("to_lowercase", "to_uppercase", "strip_whitespace", "compress_whitespace",
                   "dotprefix", "url_decode", "to_sha256", "to_md5", "to_sha1",
                   "strip_pseudo_headers", "header_lowercase")

# HTTP sticky buffers (Suricata 5+ names) -> mos buffer names; "~" marks the
# ones whose side follows the rule's direction (request to the server,
# response to the client)
HTTP_STICKY = {
    "http.method": "http.method", "http.uri": "http.uri", "http.uri.raw": "http.uri.raw",
    "http.protocol": "http.protocol", "http.request_line": "http.request_line",
    "http.header": "~http.header", "http.header.raw": "~http.header.raw",
    "http.header_names": "~http.header_names", "http.host": "http.host",
    "http.host.raw": "http.host.raw", "http.user_agent": "http.user_agent",
    "http.cookie": "~http.cookie", "http.content_type": "~http.content_type",
    "http.content_len": "~http.content_len", "http.referer": "http.referer",
    "http.accept": "http.accept", "http.accept_lang": "http.accept_lang",
    "http.accept_enc": "http.accept_enc", "http.connection": "~http.connection",
    "http.request_body": "http.request_body", "http.client_body": "http.request_body",
    "http.start": "~http.start", "http.stat_code": "http.stat_code",
    "http.stat_msg": "http.stat_msg", "http.response_line": "http.response_line",
    "http.server": "http.server", "http.location": "http.location",
    "http.response_body": "http.response_body", "http.server_body": "http.response_body",
    "file.data": "~body", "file_data": "~body",
    # Suricata 4 sticky spellings still found in rule files
    "http_request_line": "http.request_line", "http_response_line": "http.response_line",
    "http_accept": "http.accept", "http_accept_enc": "http.accept_enc",
    "http_accept_lang": "http.accept_lang", "http_connection": "~http.connection",
    "http_content_len": "~http.content_len", "http_content_type": "~http.content_type",
    "http_referer": "http.referer", "http_start": "~http.start",
    "http_protocol": "http.protocol", "http_header_names": "~http.header_names",
}
# legacy content modifiers: they move the content before them into a buffer
HTTP_MODIFIERS = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_header": "~http.header",
    "http_raw_header": "~http.header.raw", "http_method": "http.method",
    "http_cookie": "~http.cookie", "http_user_agent": "http.user_agent",
    "http_host": "http.host", "http_raw_host": "http.host.raw",
    "http_client_body": "http.request_body", "http_server_body": "http.response_body",
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg",
}
# TLS sticky buffers (Suricata 5+ names and the older underscore ones) -> mos
# buffer names; tls.certs and tls.subjectaltname hold one entry per
# certificate or name (a rule matches if one entry does)
TLS_STICKY = {
    "tls.sni": "tls.sni", "tls_sni": "tls.sni",
    "tls.cert_subject": "tls.cert_subject", "tls_cert_subject": "tls.cert_subject",
    "tls.cert_issuer": "tls.cert_issuer", "tls_cert_issuer": "tls.cert_issuer",
    "tls.cert_serial": "tls.cert_serial", "tls_cert_serial": "tls.cert_serial",
    "tls.cert_fingerprint": "tls.cert_fingerprint",
    "tls_cert_fingerprint": "tls.cert_fingerprint",
    "tls.certs": "tls.certs", "tls.subjectaltname": "tls.subjectaltname",
    "ja3.hash": "ja3.hash", "ja3_hash": "ja3.hash", "ja3.string": "ja3.string",
    "ja3_string": "ja3.string", "ja3s.hash": "ja3s.hash", "ja3s_hash": "ja3s.hash",
    "ja3s.string": "ja3s.string", "ja3s_string": "ja3s.string", "ja4.hash": "ja4.hash",
}
TLS_BUFFERS = frozenset(TLS_STICKY.values())
#: tls.version values -> the version numbers they stand for
TLS_VERSIONS = {"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304,
                "3.0": 0x0300, "ssl3": 0x0300, "sslv3": 0x0300}

# pcre's HTTP flags
PCRE_HTTP = {"U": "http.uri", "I": "http.uri.raw", "H": "~http.header",
             "D": "~http.header.raw", "M": "http.method", "C": "~http.cookie",
             "P": "http.request_body", "Q": "http.response_body", "S": "http.stat_code",
             "Y": "http.stat_msg", "V": "http.user_agent", "W": "http.host",
             "Z": "http.host.raw"}
#: request buffers there as soon as the request line is
LINE_BUFFERS = ("http.method", "http.uri", "http.uri.raw", "http.protocol", "http.request_line")
#: buffers only a response has (the rest, with ~ names resolved, are the request's)
RESPONSE_BUFFERS = ("http.stat_code", "http.stat_msg", "http.response_line", "http.server",
                    "http.location", "http.response_body", "res:http.header",
                    "res:http.header.raw", "res:http.header_names", "res:http.cookie",
                    "res:http.content_type", "res:http.content_len", "res:http.connection",
                    "res:http.start")


class RuleError(ValueError):
    """A rule outside the subset or malformed.  ``reason`` says why; str()
    adds the file and line when known."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None,
                 sid: int | None = None):
        self.reason, self.path, self.line, self.sid = reason, path, line, sid
        where = f"{path}:{line}: " if path else ""
        super().__init__(f"{where}{reason}")


# ---------------------------------------------------------------- rule parts

@dataclass
class Content:
    """content and its modifiers (offsets None when not given)."""
    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int | str | None = None
    depth: int | str | None = None
    distance: int | str | None = None
    within: int | str | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False
    fast_pattern_only: bool = False
    fast_pattern_chop: tuple | None = None   # (offset, length)
    rawbytes: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None


@dataclass
class Buffer:
    """Options that inspect one application-layer buffer: its transforms,
    then its match chain (content, pcre, byte_*, isdataat) and size checks
    (bsize, urilen).  ``name`` is a mos buffer name; "res:" marks the
    response's copy of a buffer both messages have."""
    name: str
    transforms: list = field(default_factory=list)
    matches: list = field(default_factory=list)
    size: "IntCmp | None" = None

    @property
    def response(self) -> bool:
        return self.name in RESPONSE_BUFFERS


@dataclass
class Pcre:
    pattern: str            # the regex between the slashes, as written
    flags: str              # the letters after the last slash
    negated: bool = False
    relative: bool = False  # R: from the end of the previous match
    anchored_start: bool = False   # A
    dollar_endonly: bool = False   # E
    ungreedy: bool = False         # G
    compiled: object = None        # re.Pattern on bytes, compiled at load
    buffer: str | None = None      # an HTTP flag's buffer (U, H, ...), else None


@dataclass
class ByteTest:
    nbytes: int
    op: str                 # <, >, =, <=, >=, &, ^ (negated below)
    value: int | str
    offset: int | str
    negated: bool = False
    relative: bool = False
    big_endian: bool = True
    string: str | None = None   # hex, dec, oct when the bytes are text
    bitmask: int | None = None


@dataclass
class ByteJump:
    nbytes: int
    offset: int | str
    relative: bool = False
    multiplier: int = 1
    big_endian: bool = True
    string: str | None = None
    align: bool = False
    from_beginning: bool = False
    from_end: bool = False
    post_offset: int = 0
    bitmask: int | None = None


@dataclass
class ByteExtract:
    nbytes: int
    offset: int
    name: str
    relative: bool = False
    multiplier: int = 1
    big_endian: bool = True
    string: str | None = None
    align: int = 0


@dataclass
class IsDataAt:
    offset: int | str
    negated: bool = False
    relative: bool = False


Match = Union[Content, Pcre, ByteTest, ByteJump, ByteExtract, IsDataAt]


@dataclass
class Flow:
    to_server: bool = False
    to_client: bool = False
    established: bool = False
    not_established: bool = False
    stateless: bool = False
    only_stream: bool = False
    no_stream: bool = False


@dataclass
class FlowBits:
    cmd: str                 # set, unset, toggle, isset, isnotset, noalert
    names: tuple = ()
    any_of: bool = True      # isset/isnotset a|b: any; a&b: all


@dataclass
class IntCmp:
    """dsize / stream_size comparisons: op is one of = != < > <= >= <>."""
    op: str
    value: int
    value2: int = 0

    def test(self, v: int) -> bool:
        op = self.op
        if op == "=":
            return v == self.value
        if op == "!=":
            return v != self.value
        if op == "<":
            return v < self.value
        if op == ">":
            return v > self.value
        if op == "<=":
            return v <= self.value
        if op == ">=":
            return v >= self.value
        return self.value < v < self.value2   # <>: exclusive, as Suricata


@dataclass
class Flags:
    """TCP flags: ``want`` bits with modifier '' (exactly, ignoring mask),
    '+' (these and maybe others), '*' (any of these), '!' (none of these)."""
    want: int
    modifier: str = ""
    ignore: int = 0

    def test(self, flags: int) -> bool:
        f = flags & ~self.ignore & 0xFF
        if self.modifier == "+":
            return f & self.want == self.want
        if self.modifier == "*":
            return f & self.want != 0
        if self.modifier == "!":
            return f & self.want == 0
        return f == self.want


@dataclass
class Threshold:
    kind: str        # threshold, limit, both, backoff, detection_filter
    track: str       # by_src, by_dst, by_rule, by_both, by_flow
    count: int
    seconds: float
    multiplier: int = 0   # backoff


@dataclass
class Rule:
    action: str
    proto: str
    src: AddressGroup
    sport: PortGroup
    bidirectional: bool
    dst: AddressGroup
    dport: PortGroup
    sid: int = 0
    gid: int = 1
    rev: int = 0
    msg: str = ""
    classtype: str | None = None
    priority: int | None = None
    references: list = field(default_factory=list)
    metadata: list = field(default_factory=list)
    target: str | None = None
    matches: list = field(default_factory=list)      # Match objects in rule order
    flow: Flow = field(default_factory=Flow)
    flowbits: list = field(default_factory=list)
    dsize: IntCmp | None = None
    flags: Flags | None = None
    stream_size: tuple | None = None               # (which, IntCmp)
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    noalert: bool = False
    stream_events: list = field(default_factory=list)   # mos ERROR reason names
    buffers: list = field(default_factory=list)         # Buffer: application-layer options
    tag: str | None = None
    tls_checks: list = field(default_factory=list)      # TlsCheck: tls.version, tls.subject, ...
    # "=>" (Suricata 8): one transaction's buffers of both directions; the
    # header names the client, then the server
    transactional: bool = False
    text: str = ""
    path: str | None = None
    line: int | None = None

    def contents(self) -> list:
        return [m for m in self.matches if isinstance(m, Content)]

    def all_contents(self) -> list:
        """(buffer name or None for the stream/packet, Content) of every content."""
        out = [(None, c) for c in self.contents()]
        for b in self.buffers:
            out += [(b.name, m) for m in b.matches if isinstance(m, Content)]
        return out

    @property
    def is_tls(self) -> bool:
        """Evaluated on TLS handshakes (it inspects TLS buffers or fields)."""
        return bool(self.tls_checks) or any(b.name in TLS_BUFFERS for b in self.buffers)

    @property
    def is_http(self) -> bool:
        """Evaluated on HTTP transactions (it inspects HTTP buffers)."""
        return bool(self.buffers) and not self.is_tls

    @property
    def is_stream(self) -> bool:
        """Matched on the reassembled stream (else per packet)."""
        if self.buffers or self.proto == "tcp-pkt" or self.flow.no_stream or \
                self.dsize is not None:
            return False
        return self.proto in ("tcp", "tcp-stream", "http", "http1", "tls", "ssl")


# ---------------------------------------------------------------- lexing

_HEADER = re.compile(r"^\s*(\S+)\s+(\S+)\s+(.+?)\s+(->|<>|<-|=>)\s+(.+?)\s*\((.*)\)\s*$",
                     re.DOTALL)


def _split_header_side(text: str) -> tuple[str, str]:
    """'addr port' where either may be a bracketed list with spaces."""
    text = text.strip()
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch.isspace() and depth == 0:
            addr, port = text[:i], text[i:].strip()
            if not port or " " in port.replace(", ", ","):
                if port and port.startswith("["):
                    return addr, port
                raise RuleError(f"cannot read address and port from {text!r}")
            return addr, port
    raise RuleError(f"cannot read address and port from {text!r}")


def split_options(body: str) -> list[tuple[str, str | None]]:
    """'k1:v1; k2; ...' -> [(k1, v1), (k2, None)]; ';' inside quotes or after
    a backslash does not end an option."""
    out = []
    cur: list[str] = []
    in_q = esc = False
    for ch in body:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if ch == "\\":
            cur.append(ch)
            esc = True
            continue
        if ch == '"':
            in_q = not in_q
        if ch == ";" and not in_q:
            opt = "".join(cur).strip()
            cur = []
            if opt:
                out.append(_kv(opt))
            continue
        cur.append(ch)
    if in_q:
        raise RuleError("unterminated quoted string in the options")
    rest = "".join(cur).strip()
    if rest:
        raise RuleError(f"option {rest[:40]!r} does not end with ';'")
    return out


def _kv(opt: str) -> tuple[str, str | None]:
    if ":" in opt:
        k, v = opt.split(":", 1)
        return k.strip().lower(), v.strip()
    return opt.strip().lower(), None


def _unquote(v: str | None, key: str) -> str:
    if v is None:
        raise RuleError(f"{key} needs a value")
    v = v.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def parse_content(v: str, key: str = "content") -> tuple[bytes, bool]:
    """'!"a|0d 0a|b\\;"' -> (b'a\\r\\nb;', True)."""
    v = v.strip()
    neg = v.startswith("!")
    if neg:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleError(f"{key} must be a quoted string, not {v[:40]!r}")
    s = v[1:-1]
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "|":
            j = s.find("|", i + 1)
            if j < 0:
                raise RuleError(f"{key}: unterminated |hex| in {s[:40]!r}")
            hexs = s[i + 1:j].replace(" ", "")
            if len(hexs) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", hexs):
                raise RuleError(f"{key}: bad hex {s[i:j + 1]!r}")
            out += bytes.fromhex(hexs)
            i = j + 1
        elif ch == "\\":
            if i + 1 >= len(s) or s[i + 1] not in '\\";:':
                raise RuleError(f"{key}: bad escape {s[i:i + 2]!r} (escape only \\ \" ; :)")
            out.append(ord(s[i + 1]))
            i += 2
        elif ch == '"':
            raise RuleError(f"{key}: unescaped '\"' inside {s[:40]!r}")
        else:
            out += ch.encode("utf-8")
            i += 1
    if not out:
        raise RuleError(f"{key} is empty")
    return bytes(out), neg


def _int(v: str | None, key: str, lo: int = -(1 << 31), hi: int = (1 << 31) - 1) -> int:
    if v is None:
        raise RuleError(f"{key} needs a number")
    try:
        n = int(v.strip(), 0)
    except ValueError:
        raise RuleError(f"{key}: {v!r} is not a number") from None
    if not lo <= n <= hi:
        raise RuleError(f"{key}: {n} is out of range {lo}..{hi}")
    return n


def _int_or_var(v: str | None, key: str, names: set, lo: int = -(1 << 31)) -> int | str:
    if v is not None and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v.strip()):
        name = v.strip()
        if name not in names:
            raise RuleError(f"{key}: {name!r} is not a byte_extract variable of this rule")
        return name
    return _int(v, key, lo)


# ---------------------------------------------------------------- options

_ENDIAN = {"big": True, "little": False}
_BASES = ("hex", "dec", "oct")


def _byte_common(parts: list[str], key: str, obj, allowed: set) -> None:
    i = 0
    while i < len(parts):
        p = parts[i].strip()
        word = p.split(None, 1)
        name = word[0].lower() if word else ""
        if name == "relative" and "relative" in allowed:
            obj.relative = True
        elif name in _ENDIAN:
            obj.big_endian = _ENDIAN[name]
        elif name == "dce":
            raise RuleError(f"{key}: dce needs the DCERPC parser")
        elif name == "string":
            obj.string = "dec"
            if i + 1 < len(parts) and parts[i + 1].strip().lower() in _BASES:
                obj.string = parts[i + 1].strip().lower()
                i += 1
        elif name == "bitmask" and "bitmask" in allowed:
            obj.bitmask = _int(word[1] if len(word) > 1 else None, f"{key} bitmask", 0)
        elif name == "multiplier" and "multiplier" in allowed:
            obj.multiplier = _int(word[1] if len(word) > 1 else None, f"{key} multiplier", 1,
                                  65535)
        elif name == "post_offset" and "post_offset" in allowed:
            obj.post_offset = _int(word[1] if len(word) > 1 else None, f"{key} post_offset")
        elif name == "align" and "align" in allowed:
            if isinstance(obj, ByteExtract):
                obj.align = _int(word[1] if len(word) > 1 else None, f"{key} align", 2, 4)
            else:
                obj.align = True
        elif name in ("from_beginning", "from_end") and name in allowed:
            setattr(obj, name, True)
        else:
            raise RuleError(f"{key}: unknown argument {p!r}")
        i += 1


def _byte_test(v: str | None, names: set) -> ByteTest:
    parts = [p.strip() for p in (v or "").split(",")]
    if len(parts) < 4:
        raise RuleError("byte_test needs bytes, operator, value, offset")
    nb = _int(parts[0], "byte_test bytes", 1, 10)
    op = parts[1].replace(" ", "")
    neg = op.startswith("!")
    if neg:
        op = op[1:]
    if op not in ("<", ">", "=", "<=", ">=", "&", "^"):
        raise RuleError(f"byte_test: unknown operator {parts[1]!r}")
    value = parts[2] if re.fullmatch(r"[A-Za-z_]\w*", parts[2]) else _int(parts[2], "byte_test value", 0, (1 << 64) - 1)
    if isinstance(value, str) and value not in names:
        raise RuleError(f"byte_test value: {value!r} is not a byte_extract variable of this rule")
    bt = ByteTest(nb, op, value,
                  _int_or_var(parts[3], "byte_test offset", names), negated=neg)
    _byte_common(parts[4:], "byte_test", bt, {"relative", "bitmask"})
    if bt.string is None and nb > 8:
        raise RuleError(f"byte_test: {nb} bytes without 'string' (most is 8)")
    return bt


def _byte_jump(v: str | None, names: set) -> ByteJump:
    parts = [p.strip() for p in (v or "").split(",")]
    if len(parts) < 2:
        raise RuleError("byte_jump needs bytes, offset")
    bj = ByteJump(_int(parts[0], "byte_jump bytes", 1, 10),
                  _int_or_var(parts[1], "byte_jump offset", names))
    _byte_common(parts[2:], "byte_jump", bj,
                 {"relative", "bitmask", "multiplier", "post_offset", "align", "from_beginning",
                  "from_end"})
    return bj


def _byte_extract(v: str | None, names: set) -> ByteExtract:
    parts = [p.strip() for p in (v or "").split(",")]
    if len(parts) < 3:
        raise RuleError("byte_extract needs bytes, offset, name")
    name = parts[2]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RuleError(f"byte_extract: {name!r} is not a variable name")
    be = ByteExtract(_int(parts[0], "byte_extract bytes", 1, 10),
                     _int(parts[1], "byte_extract offset"), name)
    _byte_common(parts[3:], "byte_extract", be, {"relative", "multiplier", "align"})
    names.add(name)
    return be


def _isdataat(v: str | None, names: set) -> IsDataAt:
    parts = [p.strip() for p in (v or "").split(",")]
    first = parts[0]
    neg = first.startswith("!")
    d = IsDataAt(_int_or_var(first[1:] if neg else first, "isdataat", names, 0), negated=neg)
    for p in parts[1:]:
        if p == "relative":
            d.relative = True
        elif p == "rawbytes":
            pass
        else:
            raise RuleError(f"isdataat: unknown argument {p!r}")
    return d


_PCRE_OK = set("ismxAEGROB")   # B: raw bytes (Snort's), all mos matches on
_PCRE_APP = set("UIPQHDMCSYVWZ")


def _pcre(v: str | None) -> Pcre:
    v = (v or "").strip()
    neg = v.startswith("!")
    if neg:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleError(f"pcre must be a quoted string, not {v[:40]!r}")
    body = v[1:-1]
    m = re.fullmatch(r"(?s)m?(.)(.*)\1([A-Za-z]*)", body)
    if not m or m.group(1) not in "/{#|!%@":
        raise RuleError(f"pcre: expected \"/regex/flags\", got {body[:40]!r}")
    pat, flags = m.group(2), m.group(3)
    app = sorted(set(flags) & _PCRE_APP)
    if len(app) > 1:
        raise RuleError(f"pcre: flags {''.join(app)} name more than one HTTP buffer")
    bad = sorted(set(flags) - _PCRE_OK - _PCRE_APP)
    if bad:
        raise RuleError(f"pcre: unknown flag(s) {''.join(bad)}")
    pc = Pcre(pat, flags, negated=neg, relative="R" in flags, anchored_start="A" in flags,
              dollar_endonly="E" in flags, ungreedy="G" in flags,
              buffer=PCRE_HTTP[app[0]] if app else None)
    pc.compiled = compile_pcre(pat, flags)
    return pc


def compile_pcre(pat: str, flags: str):
    """Python's re on bytes for a PCRE pattern, or RuleError naming what it
    does not support.  Bytes above 0x7f in the pattern stand for themselves."""
    if "G" in flags:
        raise RuleError("pcre: the G (ungreedy) flag is not supported")
    if re.search(r"\(\?<[A-Za-z_]", pat):
        pat = re.sub(r"\(\?<([A-Za-z_])", r"(?P<\1", pat)
    # \g{N} and \gN are PCRE's numbered back references: Python writes \N
    pat = re.sub(r"\\g\{?(\d+)\}?", r"\\\1", pat)
    if re.search(r"\\x\{", pat):
        pat = re.sub(r"\\x\{([0-9A-Fa-f]{1,2})\}", lambda m: "\\x%02x" % int(m.group(1), 16),
                     pat)
    fl = 0
    fl |= re.IGNORECASE if "i" in flags else 0
    fl |= re.DOTALL if "s" in flags else 0
    fl |= re.MULTILINE if "m" in flags else 0
    fl |= re.VERBOSE if "x" in flags else 0
    try:
        return re.compile(pat.encode("latin-1", "strict"), fl)
    except UnicodeEncodeError:
        raise RuleError("pcre: characters beyond latin-1 in the pattern") from None
    except re.error as exc:
        raise RuleError(f"pcre: {exc}") from None


def _flow(v: str | None) -> Flow:
    f = Flow()
    for p in (v or "").split(","):
        p = p.strip().lower()
        if p in ("to_server", "from_client"):
            f.to_server = True
        elif p in ("to_client", "from_server"):
            f.to_client = True
        elif p in ("established", "not_established", "stateless", "only_stream", "no_stream"):
            setattr(f, p, True)
        elif p in ("only_frag", "no_frag"):
            pass   # mos reassembles fragments before TCP: every segment is whole
        else:
            raise RuleError(f"flow: unknown option {p!r}")
    if f.to_server and f.to_client:
        raise RuleError("flow: to_server and to_client together")
    if f.established and f.not_established:
        raise RuleError("flow: established and not_established together")
    if f.only_stream and f.no_stream:
        raise RuleError("flow: only_stream and no_stream together")
    return f


def _flowbits(v: str | None) -> FlowBits:
    parts = [p.strip() for p in (v or "").split(",", 1)]
    cmd = parts[0].lower()
    if cmd == "noalert":
        if len(parts) > 1:
            raise RuleError("flowbits:noalert takes no name")
        return FlowBits("noalert")
    if cmd not in ("set", "unset", "toggle", "isset", "isnotset"):
        raise RuleError(f"flowbits: unknown command {cmd!r}")
    if len(parts) < 2 or not parts[1]:
        raise RuleError(f"flowbits:{cmd} needs a name")
    spec = parts[1]
    any_of = True
    if "&" in spec:
        names = [n.strip() for n in spec.split("&")]
        any_of = False
    else:
        names = [n.strip() for n in spec.split("|")]
    if (len(names) > 1) and cmd not in ("isset", "isnotset"):
        raise RuleError(f"flowbits:{cmd} takes one name, not {spec!r}")
    for n in names:
        if not n or not re.fullmatch(r"[^\s,;|&]+", n):
            raise RuleError(f"flowbits: bad name {n!r}")
    return FlowBits(cmd, tuple(names), any_of)


def _intcmp(v: str | None, key: str) -> IntCmp:
    s = (v or "").replace(" ", "")
    m = re.fullmatch(r"(\d+)<>(\d+)", s)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a >= b:
            raise RuleError(f"{key}: range {s!r} is empty")
        return IntCmp("<>", a, b)
    m = re.fullmatch(r"(!=|<=|>=|!|<|>|=)?(\d+)", s)
    if not m:
        raise RuleError(f"{key}: cannot read {v!r}")
    op = {"!": "!=", None: "="}.get(m.group(1), m.group(1))
    return IntCmp(op, int(m.group(2)))


_FLAGBITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
             "C": 0x80, "1": 0x80, "2": 0x40, "0": 0}


def _flags(v: str | None) -> Flags:
    s = (v or "").replace(" ", "")
    want_s, _, ign_s = s.partition(",")
    mod = ""
    while want_s and want_s[0] in "+*!":
        mod = want_s[0]
        want_s = want_s[1:]
    while want_s and want_s[-1] in "+*!":   # old form: flags:S+
        mod = want_s[-1]
        want_s = want_s[:-1]
    if not want_s:
        raise RuleError(f"flags: no flags in {v!r}")

    def bits(t: str) -> int:
        b = 0
        for ch in t.upper():
            if ch not in _FLAGBITS:
                raise RuleError(f"flags: unknown flag {ch!r} in {v!r}")
            b |= _FLAGBITS[ch]
        return b
    return Flags(bits(want_s), mod, bits(ign_s) if ign_s else 0)


def _threshold(v: str | None, kind_key: str) -> Threshold:
    fields = {}
    for p in (v or "").split(","):
        w = p.split()
        if len(w) != 2:
            raise RuleError(f"{kind_key}: cannot read {p.strip()!r}")
        fields[w[0].lower()] = w[1]
    kind = fields.pop("type", None) if kind_key == "threshold" else "detection_filter"
    if kind not in ("threshold", "limit", "both", "backoff", "detection_filter"):
        raise RuleError(f"{kind_key}: type must be threshold, limit, both or backoff, "
                        f"not {kind!r}")
    track = fields.pop("track", None)
    tracks = ("by_flow",) if kind == "backoff" else ("by_src", "by_dst", "by_rule", "by_both",
                                                      "by_flow")
    if track not in tracks:
        raise RuleError(f"{kind_key}: track must be {', '.join(tracks)}")
    count = _int(fields.pop("count", None), f"{kind_key} count", 1)
    if kind == "backoff":
        mult = _int(fields.pop("multiplier", None), f"{kind_key} multiplier", 1)
        seconds = 0
    else:
        mult = 0
        seconds = _int(fields.pop("seconds", None), f"{kind_key} seconds", 1)
    if fields:
        raise RuleError(f"{kind_key}: unknown field(s) {', '.join(sorted(fields))}")
    return Threshold(kind, track, count, float(seconds), mult)


_CONTENT_MODS = ("nocase", "offset", "depth", "distance", "within", "startswith", "endswith",
                 "fast_pattern", "rawbytes")
_IGNORED = ("rawbytes",)   # raw bytes are all mos matches on


def _apply_mod(rule: Rule, key: str, v: str | None, names: set, last=None) -> None:
    if key == "rawbytes":
        return
    if not isinstance(last, Content):
        raise RuleError(f"{key} without a content before it")
    c = last
    if key == "nocase":
        c.nocase = True
    elif key in ("offset", "depth", "distance", "within"):
        if getattr(c, key) is not None:
            raise RuleError(f"{key} given twice for content {c.pattern[:20]!r}")
        lo = -(1 << 16) if key == "distance" else 0
        setattr(c, key, _int_or_var(v, key, names, lo))
        if key in ("offset", "depth") and (c.distance is not None or c.within is not None) or \
           key in ("distance", "within") and (c.offset is not None or c.depth is not None):
            raise RuleError(f"content {c.pattern[:20]!r}: relative (distance/within) and "
                            f"absolute (offset/depth) modifiers together")
        n = getattr(c, key)
        if key in ("depth", "within") and isinstance(n, int) and n < len(c.pattern):
            raise RuleError(f"{key} {n} is shorter than the content ({len(c.pattern)} bytes)")
    elif key == "startswith":
        c.startswith = True
        c.offset = c.offset if c.offset is not None else 0
        c.depth = c.depth if c.depth is not None else len(c.pattern)
    elif key == "endswith":
        c.endswith = True
    elif key == "fast_pattern":
        if any(m.fast_pattern for _, m in rule.all_contents()):
            raise RuleError("fast_pattern set on two contents")
        c.fast_pattern = True
        if v:
            v = v.strip()
            if v == "only":
                c.fast_pattern_only = True
            else:
                m = re.fullmatch(r"(\d+)\s*,\s*(\d+)", v)
                if not m:
                    raise RuleError(f"fast_pattern: cannot read {v!r}")
                o, ln = int(m.group(1)), int(m.group(2))
                if o + ln > len(c.pattern):
                    raise RuleError(f"fast_pattern:{o},{ln} is past the content's end")
                c.fast_pattern_chop = (o, ln)


def parse_rule(text: str, vars_: Vars | None = None, classes: dict | None = None,
               path: str | None = None, line: int | None = None) -> Rule:
    """One rule (one logical line).  Raises RuleError with the reason."""
    try:
        return _parse(text, vars_ or Vars.defaults(), classes, path, line)
    except RuleError as exc:
        if exc.path is None and path is not None:
            raise RuleError(exc.reason, path, line, exc.sid) from None
        raise
    except GroupError as exc:
        raise RuleError(str(exc), path, line) from None


def _parse(text: str, vars_: Vars, classes: dict | None, path, line) -> Rule:
    m = _HEADER.match(text)
    if not m:
        raise RuleError("not a rule: expected 'action proto src sport -> dst dport (options)'")
    action, proto, left, arrow, right, body = m.groups()
    action = action.lower()
    proto = proto.lower()
    if action not in ACTIONS:
        raise RuleError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if arrow == "<-":
        raise RuleError("direction '<-' does not exist: use '->' or '<>'")
    if proto not in PROTOCOLS:
        if proto in APP_PROTOCOLS:
            raise RuleError(f"protocol {proto!r} needs an application-layer parser mos "
                            f"does not have yet")
        if proto in ("udp", "icmp", "icmpv6", "sctp", "pkthdr", "ipv4", "ipv6", "ip4", "ip6"):
            raise RuleError(f"protocol {proto!r}: mos tracks TCP only")
        raise RuleError(f"unknown protocol {proto!r}")
    sa, sp = _split_header_side(left)
    da, dp = _split_header_side(right)
    rule = Rule(action=action, proto=proto, src=parse_addresses(sa, vars_),
                sport=parse_ports(sp, vars_), bidirectional=arrow == "<>",
                dst=parse_addresses(da, vars_), dport=parse_ports(dp, vars_), text=text,
                path=path, line=line, transactional=arrow == "=>")
    names: set = set()
    sid_seen = False
    cur = None      # the sticky buffer options go to (None: the stream or packet)
    last = None     # the last content (or pcre...) added: modifiers act on it

    def buffer(name: str) -> Buffer:
        for b in rule.buffers:
            if b.name == name:
                return b
        b = Buffer(name)
        rule.buffers.append(b)
        return b

    def add(m, where=None) -> None:
        nonlocal last
        target = where if where is not None else cur
        (target.matches if target is not None else rule.matches).append(m)
        last = m

    for key, v in split_options(body):
        if key == "sid":
            rule.sid = _int(v, "sid", 1, (1 << 32) - 1)
            sid_seen = True
        elif key == "msg":
            rule.msg = _unquote(v, "msg").replace('\\"', '"').replace("\\;", ";")
        elif key == "rev":
            rule.rev = _int(v, "rev", 0, (1 << 32) - 1)
        elif key == "gid":
            rule.gid = _int(v, "gid", 0, (1 << 32) - 1)
        elif key == "classtype":
            ct = _unquote(v, "classtype").strip()
            if classes is not None and ct not in classes:
                raise RuleError(f"classtype {ct!r} is not in the classification file")
            rule.classtype = ct
            if rule.priority is None and classes is not None:
                rule.priority = classes[ct][1]
        elif key == "priority":
            rule.priority = _int(v, "priority", 1, 255)
        elif key == "reference":
            rule.references.append(_unquote(v, "reference"))
        elif key == "metadata":
            rule.metadata.extend(p.strip() for p in (v or "").split(",") if p.strip())
        elif key == "target":
            t = (v or "").strip()
            if t not in ("src_ip", "dest_ip"):
                raise RuleError(f"target must be src_ip or dest_ip, not {t!r}")
            rule.target = t
        elif key == "content":
            pat, neg = parse_content(v or "")
            add(Content(pat, neg))
        elif key == "uricontent":
            pat, neg = parse_content(v or "", "uricontent")
            add(Content(pat, neg), buffer("http.uri"))
        elif key in _CONTENT_MODS:
            target = last
            if key == "nocase" and not isinstance(last, Content):
                # nocase after isdataat or a byte_* option: the list's last
                # content, as Suricata takes it (the case does not depend on order)
                lst = cur.matches if cur is not None else rule.matches
                target = next((m for m in reversed(lst) if isinstance(m, Content)), last)
            _apply_mod(rule, key, v, names, target)
        elif key in HTTP_MODIFIERS:
            if not isinstance(last, Content):
                raise RuleError(f"{key} without a content before it")
            if last in rule.matches:
                rule.matches.remove(last)
                buffer(HTTP_MODIFIERS[key]).matches.append(last)
            elif cur is None or cur.name != HTTP_MODIFIERS[key]:
                raise RuleError(f"{key} on a content already in another buffer")
        elif key in HTTP_STICKY:
            cur = buffer(HTTP_STICKY[key])
        elif key in TLS_STICKY:
            cur = buffer(TLS_STICKY[key])
        elif key in TLS_CHECKS:
            rule.tls_checks.append(_tls_check(key, v))
        elif key in ("tls.store", "tls_store"):
            pass     # an output action (store the certificate chain): mos keeps no files
        elif key == "pkt_data":
            cur = None
        elif key == "pcre":
            pc = _pcre(v)
            add(pc, buffer(pc.buffer) if pc.buffer else None)
        elif key == "byte_test":
            add(_byte_test(v, names))
        elif key == "byte_jump":
            add(_byte_jump(v, names))
        elif key == "byte_extract":
            add(_byte_extract(v, names))
        elif key == "isdataat":
            add(_isdataat(v, names))
        elif key in TRANSFORMS:
            if cur is None:
                raise RuleError(f"transform {key!r} without a sticky buffer before it")
            if key not in TRANSFORMS_DONE:
                raise RuleError(f"transform {key!r} is not supported")
            if cur.matches:
                raise RuleError(f"transform {key!r} after the buffer's first match")
            cur.transforms.append(key)
        elif key == "bsize":
            if cur is None:
                raise RuleError("bsize without a sticky buffer before it")
            cur.size = _intcmp(v, "bsize")
        elif key == "urilen":
            parts = [p.strip() for p in (v or "").split(",")]
            if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("raw", "norm")):
                raise RuleError(f"urilen: expected N[,raw|norm], not {v!r}")
            b = buffer("http.uri.raw" if parts[-1] == "raw" else "http.uri")
            b.size = _intcmp(parts[0], "urilen")
        elif key == "flow":
            rule.flow = _flow(v)
        elif key == "flowbits":
            fb = _flowbits(v)
            if fb.cmd == "noalert":
                rule.noalert = True
            rule.flowbits.append(fb)
        elif key == "noalert":
            rule.noalert = True
        elif key == "tag":
            rule.tag = (v or "").strip()   # kept; mos logs no tagged packets yet
        elif key == "stream-event":
            name = (v or "").strip()
            if name not in STREAM_EVENTS:
                raise RuleError(f"stream-event {name!r} is not raised by mos (it raises "
                                f"{', '.join(STREAM_EVENTS)})")
            rule.stream_events.append(STREAM_EVENTS[name])
        elif key == "dsize":
            rule.dsize = _intcmp(v, "dsize")
        elif key in ("flags", "tcp.flags"):  # tcp.flags: Suricata 7's name for it
            rule.flags = _flags(v)
        elif key == "stream_size":
            parts = [p.strip() for p in (v or "").split(",")]
            if len(parts) != 3 or parts[0] not in ("server", "client", "both", "either"):
                raise RuleError(f"stream_size: expected side,op,number, not {v!r}")
            rule.stream_size = (parts[0], _intcmp(parts[1] + parts[2], "stream_size"))
        elif key == "threshold":
            rule.threshold = _threshold(v, "threshold")
        elif key == "detection_filter":
            rule.detection_filter = _threshold(v, "detection_filter")
        elif key in TRANSFORMS:
            raise RuleError(f"transform {key!r} needs an application-layer buffer")
        elif APP_KEYWORDS.match(key):
            raise RuleError(f"keyword {key!r} needs an application-layer parser mos does "
                            f"not have yet")
        else:
            raise RuleError(f"unknown or unsupported keyword {key!r}")
    if not sid_seen:
        raise RuleError("no sid")
    if rule.transactional and not rule.is_tls:
        raise RuleError("'=>' (transactional) is supported for TLS rules only")
    if rule.transactional and (rule.flow.to_server or rule.flow.to_client):
        raise RuleError("'=>' rules match both directions: flow:to_server/to_client "
                        "does not apply")
    if rule.buffers:
        tls_names = {b.name for b in rule.buffers if b.name in TLS_BUFFERS}
        if tls_names and len(tls_names) < len(rule.buffers):
            raise RuleError("a rule cannot inspect HTTP and TLS buffers together")
        _resolve_buffers(rule)
    for c in rule.contents():
        if c.startswith and c.relative:
            raise RuleError("startswith with distance/within")
    if rule.threshold and rule.detection_filter:
        raise RuleError("threshold and detection_filter together")
    return rule


@dataclass
class TlsCheck:
    """A TLS field keyword with a value: ``version`` (a set of version
    numbers), ``subject`` / ``issuerdn`` (substring of the first
    certificate's DN), ``fingerprint`` (its SHA-1, case-insensitive)."""
    kind: str
    value: object
    negated: bool = False


TLS_CHECKS = ("tls.version", "tls.subject", "tls.issuerdn", "tls.fingerprint")


def _tls_check(key: str, v: str | None) -> TlsCheck:
    text = (v or "").strip()
    neg = text.startswith("!")
    if neg:
        text = text[1:].strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text:
        raise RuleError(f"{key} needs a value")
    if key == "tls.version":
        vs = set()
        for part in text.split(","):
            part = part.strip().lower()
            if part not in TLS_VERSIONS:
                raise RuleError(f"tls.version: {part!r} is not one of "
                                f"{', '.join(TLS_VERSIONS)}")
            vs.add(TLS_VERSIONS[part])
        return TlsCheck("version", frozenset(vs), neg)
    if key == "tls.fingerprint":
        fp = text.lower()
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){19}", fp):
            raise RuleError(f"tls.fingerprint: {text!r} is not a SHA-1 fingerprint "
                            f"(20 hex bytes separated by ':')")
        return TlsCheck("fingerprint", fp, neg)
    return TlsCheck(key.split(".", 1)[1], text.replace('\\"', '"'), neg)


def _resolve_buffers(rule: Rule) -> None:
    """Buffers both messages have take the rule's side: the response's for a
    rule to the client (or one that also inspects a response-only buffer),
    else the request's; equal names merge in rule order."""
    response = rule.flow.to_client or any(
        b.name in RESPONSE_BUFFERS for b in rule.buffers if not b.name.startswith("~"))
    out: list = []
    for b in rule.buffers:
        if b.name == "~body":
            # file_data: the request's body only in a rule to the server; with
            # no direction it is the response's (what a client downloads)
            b.name = "http.request_body" if rule.flow.to_server else "http.response_body"
        elif b.name.startswith("~"):
            b.name = ("res:" if response else "") + b.name[1:]
        same = next((x for x in out if x.name == b.name), None)
        if same is None:
            out.append(b)
        else:
            if b.transforms:
                raise RuleError(f"buffer {b.name} given twice with transforms")
            same.matches += b.matches
            same.size = same.size or b.size
    rule.buffers = out
    for b in rule.buffers:
        if not b.matches and b.size is None:
            raise RuleError(f"buffer {b.name} has no option after it")


# ---------------------------------------------------------------- files

@dataclass
class Refusal:
    path: str
    line: int
    sid: int | None
    reason: str

    def __str__(self) -> str:
        sid = f" (sid {self.sid})" if self.sid else ""
        return f"{self.path}:{self.line}{sid}: {self.reason}"


@dataclass
class RuleSet:
    rules: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    disabled: int = 0          # commented-out rules (not counted as refused)

    def summary(self) -> dict:
        reasons: dict = {}
        for r in self.refused:
            key = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", r.reason)
            reasons[key] = reasons.get(key, 0) + 1
        return {"loaded": len(self.rules), "refused": len(self.refused),
                "disabled": self.disabled,
                "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


_SID = re.compile(r"[;(\s]sid\s*:\s*(\d+)")


def load_classification(path: str) -> dict:
    """classification.config -> {shortname: (description, priority)}."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"config\s+classification\s*:\s*([^,]+),([^,]*),\s*(\d+)", line)
            if not m:
                raise RuleError(f"cannot read classification {line[:60]!r}", path, n)
            out[m.group(1).strip()] = (m.group(2).strip(), int(m.group(3)))
    return out


def _logical_lines(fh) -> Iterable[tuple[int, str]]:
    """(first line number, text) with backslash continuations joined."""
    buf, start = "", 0
    for n, line in enumerate(fh, 1):
        line = line.rstrip("\r\n")
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1]
            continue
        buf += line
        yield start, buf
        buf = ""
    if buf:
        yield start, buf


def _load_lines(fh, path: str, vars_: Vars, classes: dict | None, rs: RuleSet,
                sids: dict) -> None:
    for n, text in _logical_lines(fh):
        s = text.strip()
        if not s:
            continue
        if s.startswith("#"):
            if re.match(r"#+\s*(alert|drop|reject|pass)\s", s):
                rs.disabled += 1
            continue
        if len(s) > 65536:
            rs.refused.append(Refusal(path, n, None, f"rule of {len(s)} characters "
                                      f"(most is 65536)"))
            continue
        sm = _SID.search(s)
        sid = int(sm.group(1)) if sm else None
        try:
            rule = parse_rule(s, vars_, classes, path, n)
        except RuleError as exc:
            rs.refused.append(Refusal(path, n, sid, exc.reason))
            continue
        first = sids.get((rule.gid, rule.sid))
        if first is not None:
            rs.refused.append(Refusal(path, n, rule.sid, f"duplicate sid {rule.sid} "
                                      f"(first at {first.path}:{first.line})"))
            continue
        sids[(rule.gid, rule.sid)] = rule
        rs.rules.append(rule)


def load_rules(paths: str | Iterable[str], vars_: Vars | None = None,
               classes: dict | None = None, ruleset: RuleSet | None = None) -> RuleSet:
    """Every rule of the files that parses; the others refused with file,
    line and reason.  A file that cannot be read is one refusal, not an error."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    vars_ = vars_ or Vars.defaults()
    rs = ruleset or RuleSet()
    sids = {(r.gid, r.sid): r for r in rs.rules}
    for path in paths:
        path = os.fspath(path)
        try:
            fh = open(path, encoding="utf-8", errors="replace")
        except OSError as exc:
            rs.refused.append(Refusal(path, 0, None, f"cannot read: {exc.strerror}"))
            continue
        with fh:
            _load_lines(fh, path, vars_, classes, rs, sids)
    return rs


def load_rules_text(text: str, vars_: Vars | None = None, classes: dict | None = None,
                    name: str = "<rules>") -> RuleSet:
    """load_rules for rules given as text (tests, examples); ``name`` stands
    for the file in messages."""
    import io
    rs = RuleSet()
    _load_lines(io.StringIO(text), name, vars_ or Vars.defaults(), classes, rs, {})
    return rs


def main(argv=None) -> int:
    """python -m middleboxes.ids.rules FILE... : what loads and why the rest does not."""
    import argparse
    import json
    ap = argparse.ArgumentParser(prog="python -m middleboxes.ids.rules")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--classification", help="classification.config")
    ap.add_argument("--list", action="store_true", help="print every refusal")
    a = ap.parse_args(argv)
    classes = load_classification(a.classification) if a.classification else None
    rs = load_rules(a.files, classes=classes)
    if a.list:
        for r in rs.refused:
            print(r)
    print(json.dumps(rs.summary(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
