"""TLS for apps: handshake events, hello fields, fingerprints and certificates.

The record layer runs in C as a compiled stream consumer (``mos.app._tls``)
on both streams of each flow; it keeps the ClientHello, ServerHello and
Certificate messages and raises an event for each.  Their fields are parsed
here, in Python, once per message and only when a handler reads them:

>>> import mos
>>> from mos.app import tls
>>> from mos.testing import tls_capture
>>> eng = mos.Engine()
>>> _ = tls.Tls().attach(eng)
>>> mon = eng.attach(mos.Monitor())
>>> seen = []
>>> @mon.on(tls.TLS_CLIENT_HELLO)
... def hello(flow, side, event):
...     ch = flow.tls.client_hello
...     seen.append((ch.sni, ch.alpn, len(ch.ja3_hash)))
>>> _ = eng.run(tls_capture())
>>> seen[0]
('www.example.org', ['h2', 'http/1.1'], 32)

Events (user-defined events on Event.STREAM_NOTE, in packet order with
everything else, on the side that received the message):

===================== ===================================================
TLS_CLIENT_HELLO      ``flow.tls.client_hello`` (side SERVER)
TLS_SERVER_HELLO      ``flow.tls.server_hello`` (side CLIENT)
TLS_CERTIFICATE       ``flow.tls.certificates``: the server's chain, in
                      clear up to TLS 1.2 (side CLIENT)
TLS_HANDSHAKE_DONE    what a passive observer sees of the handshake is
                      over (ServerHelloDone, or the first encrypted record
                      after the ServerHello)
TLS_ANOMALY           a direction that started as TLS stopped or skipped
                      a message: ``flow.tls.anomaly`` names it
===================== ===================================================

The parsing functions (``parse_client_hello``, ``parse_server_hello``,
``parse_certificates``) are sans-I/O: bytes of one handshake message body
in, an object out, ``TlsParseError`` naming the field on malformed input.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
import weakref
from typing import List, Optional, Tuple

from mos.dualstack._engine import flow_attribute
from mos.errors import HandlerContextError
from mos.events import Event, define_event

from . import _tls
from .attached import AttachedParser

MAGIC = _tls.MAGIC
_K = _tls.KIND

__all__ = ["Tls", "TlsFlow", "ClientHello", "ServerHello", "Certificate", "TlsParseError",
           "parse_client_hello", "parse_server_hello", "parse_certificates",
           "version_name", "is_grease", "TLS_NOTE", "TLS_CLIENT_HELLO", "TLS_SERVER_HELLO",
           "TLS_CERTIFICATE", "TLS_HANDSHAKE_DONE", "TLS_ANOMALY"]


def _kind(flow) -> int:
    code = flow.event_info.code
    return code & 0xFFFF if (code & 0xFFFF0000) == MAGIC else 0


def _is(kind):
    return lambda flow, side, event: _kind(flow) == kind


TLS_NOTE = define_event(Event.STREAM_NOTE, lambda flow, side, event: _kind(flow) != 0,
                        name="TLS_NOTE")
TLS_CLIENT_HELLO = define_event(TLS_NOTE, _is(_K["client_hello"]), name="TLS_CLIENT_HELLO")
TLS_SERVER_HELLO = define_event(TLS_NOTE, _is(_K["server_hello"]), name="TLS_SERVER_HELLO")
TLS_CERTIFICATE = define_event(TLS_NOTE, _is(_K["certificate"]), name="TLS_CERTIFICATE")
TLS_HANDSHAKE_DONE = define_event(TLS_NOTE, _is(_K["handshake_done"]),
                                  name="TLS_HANDSHAKE_DONE")
TLS_ANOMALY = define_event(TLS_NOTE, _is(_K["anomaly"]), name="TLS_ANOMALY")


# ---------------------------------------------------------------- sans-I/O parsing

class TlsParseError(ValueError):
    """A handshake message that does not parse: the message and field named."""


class _Reader:
    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: bytes, what: str, pos: int = 0, end: Optional[int] = None):
        self.buf, self.pos, self.what = buf, pos, what
        self.end = len(buf) if end is None else end

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > self.end:
            raise TlsParseError(f"{self.what}: {field} needs {n} bytes at offset {self.pos}, "
                                f"{self.end - self.pos} left")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return struct.unpack(">H", self.take(2, field))[0]

    def u24(self, field: str) -> int:
        b = self.take(3, field)
        return (b[0] << 16) | (b[1] << 8) | b[2]

    def vec(self, width: int, field: str) -> bytes:
        n = {1: self.u8, 2: self.u16, 3: self.u24}[width](field + " length")
        return self.take(n, field)

    def sub(self, width: int, field: str) -> "_Reader":
        body = self.vec(width, field)
        return _Reader(body, f"{self.what} {field}")

    @property
    def left(self) -> int:
        return self.end - self.pos


def is_grease(v: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ... 0xfafa): left out of fingerprints."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def _u16s(b: bytes) -> List[int]:
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b) - 1, 2)]


def version_name(v: Optional[int]) -> str:
    """Suricata's names: SSLv2, SSLv3, TLSv1, TLS 1.1, TLS 1.2, TLS 1.3,
    "TLS 1.3 draft-N" (0x7fNN)."""
    if v is None:
        return "UNDETERMINED"
    names = {0x0200: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLS 1.1",
             0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
    if v in names:
        return names[v]
    if v >> 8 == 0x7F:
        return f"TLS 1.3 draft-{v & 0xFF}"
    if v >> 8 == 0x7E:        # Facebook's TLS 1.3 drafts (0x7e02 = draft-23)
        return f"TLS 1.3 draft-{(v & 0xFF) + 21}-fb"
    return "UNDETERMINED"


def _extensions(r: _Reader, what: str) -> List[Tuple[int, bytes]]:
    out = []
    if r.left == 0:
        return out        # extensions are optional before TLS 1.3
    ext = r.sub(2, "extensions")
    while ext.left:
        t = ext.u16("extension type")
        out.append((t, ext.vec(2, f"extension {t}")))
    return out


class ClientHello:
    """RFC 8446 §4.1.2.  ``version`` (legacy_version), ``random``,
    ``session_id``, ``ciphers``, ``compression``, ``extensions`` ((type,
    data) in wire order), ``sni``, ``alpn``, ``supported_versions``,
    ``groups``, ``point_formats``, ``signature_algorithms``; fingerprints
    ``ja3`` / ``ja3_hash`` (Salesforce JA3) and ``ja4`` (FoxIO JA4, TCP)."""

    __slots__ = ("raw", "version", "random", "session_id", "ciphers", "compression",
                 "extensions", "sni", "alpn", "supported_versions", "groups",
                 "point_formats", "signature_algorithms")

    def __init__(self, body: bytes):
        r = _Reader(body, "ClientHello")
        self.raw = body
        self.version = r.u16("legacy_version")
        self.random = r.take(32, "random")
        self.session_id = r.vec(1, "legacy_session_id")
        cs = r.vec(2, "cipher_suites")
        if len(cs) % 2:
            raise TlsParseError(f"ClientHello: cipher_suites has an odd length {len(cs)}")
        self.ciphers = _u16s(cs)
        self.compression = list(r.vec(1, "legacy_compression_methods"))
        self.extensions = _extensions(r, "ClientHello")
        self.sni = None
        self.alpn: List[str] = []
        self.supported_versions: List[int] = []
        self.groups: List[int] = []
        self.point_formats: List[int] = []
        self.signature_algorithms: List[int] = []
        for t, data in self.extensions:
            x = _Reader(data, f"ClientHello extension {t}")
            if t == 0 and data:                 # server_name, RFC 6066 §3
                names = x.sub(2, "server_name_list")
                while names.left:
                    kind = names.u8("name_type")
                    name = names.vec(2, "host_name")
                    if kind == 0 and self.sni is None:
                        self.sni = name.decode("latin-1")
            elif t == 16:                       # ALPN, RFC 7301 §3.1
                protos = x.sub(2, "protocol_name_list")
                while protos.left:
                    self.alpn.append(protos.vec(1, "protocol_name").decode("latin-1"))
            elif t == 43:                       # supported_versions, RFC 8446 §4.2.1
                self.supported_versions = _u16s(x.vec(1, "versions"))
            elif t == 10:                       # supported_groups, RFC 8446 §4.2.7
                self.groups = _u16s(x.vec(2, "named_group_list"))
            elif t == 11:                       # ec_point_formats, RFC 8422 §5.1.2
                self.point_formats = list(x.vec(1, "ec_point_format_list"))
            elif t == 13:                       # signature_algorithms, RFC 8446 §4.2.3
                self.signature_algorithms = _u16s(x.vec(2, "supported_signature_algorithms"))

    @property
    def ja3(self) -> str:
        """Version,Ciphers,Extensions,Groups,PointFormats; GREASE left out."""
        d = lambda vs: "-".join(str(v) for v in vs if not is_grease(v))  # noqa: E731
        return ",".join([str(self.version), d(self.ciphers),
                         d(t for t, _ in self.extensions), d(self.groups),
                         "-".join(str(v) for v in self.point_formats)])

    @property
    def ja3_hash(self) -> str:
        return hashlib.md5(self.ja3.encode()).hexdigest()

    @property
    def ja4(self) -> str:
        """FoxIO JA4 for TCP: t<version><d|i><ciphers><extensions><alpn>_<sorted
        ciphers sha256/12>_<sorted extensions without SNI/ALPN, signature
        algorithms: sha256/12>."""
        versions = [v for v in self.supported_versions if not is_grease(v)]
        v = max(versions) if versions else self.version
        ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
               0x0200: "s2"}.get(v, "00")
        ciphers = [c for c in self.ciphers if not is_grease(c)]
        exts = [t for t, _ in self.extensions if not is_grease(t)]
        alpn = "00"
        if self.alpn and self.alpn[0]:
            a = self.alpn[0]
            ok = lambda ch: ch.isascii() and ch.isalnum()  # noqa: E731
            if ok(a[0]) and ok(a[-1]):
                alpn = a[0] + a[-1]
            else:                   # the first and last hex digits instead
                h = a.encode("latin-1").hex()
                alpn = h[0] + h[-1]
        a_part = "t%s%s%02d%02d%s" % (ver, "d" if self.sni else "i", min(len(ciphers), 99),
                                      min(len(exts), 99), alpn)

        def h12(text):
            return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "0" * 12

        b_part = h12(",".join("%04x" % c for c in sorted(ciphers)))
        rest = ",".join("%04x" % t for t in sorted(x for x in exts if x not in (0, 16)))
        if self.signature_algorithms and rest:
            rest += "_" + ",".join("%04x" % s for s in self.signature_algorithms)
        return f"{a_part}_{b_part}_{h12(rest)}"

    def __repr__(self):
        return f"<ClientHello {version_name(self.version)} sni={self.sni!r}>"


class ServerHello:
    """RFC 8446 §4.1.3.  ``version`` (legacy_version), ``selected_version``
    (supported_versions if present, else ``version``), ``random``,
    ``session_id``, ``cipher``, ``compression``, ``extensions``, ``alpn``,
    ``is_retry`` (a HelloRetryRequest); ``ja3s`` / ``ja3s_hash``."""

    __slots__ = ("raw", "version", "random", "session_id", "cipher", "compression",
                 "extensions", "selected_version", "alpn")

    #: RFC 8446 §4.1.3: the random of a HelloRetryRequest
    HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

    def __init__(self, body: bytes):
        r = _Reader(body, "ServerHello")
        self.raw = body
        self.version = r.u16("legacy_version")
        self.random = r.take(32, "random")
        self.session_id = r.vec(1, "legacy_session_id")
        self.cipher = r.u16("cipher_suite")
        self.compression = r.u8("legacy_compression_method")
        self.extensions = _extensions(r, "ServerHello")
        self.selected_version = self.version
        self.alpn = None
        for t, data in self.extensions:
            x = _Reader(data, f"ServerHello extension {t}")
            if t == 43:
                self.selected_version = x.u16("selected_version")
            elif t == 16:
                protos = x.sub(2, "protocol_name_list")
                if protos.left:
                    self.alpn = protos.vec(1, "protocol_name").decode("latin-1")

    @property
    def is_retry(self) -> bool:
        return self.random == self.HRR_RANDOM

    @property
    def ja3s(self) -> str:
        return ",".join([str(self.version), str(self.cipher),
                         "-".join(str(t) for t, _ in self.extensions if not is_grease(t))])

    @property
    def ja3s_hash(self) -> str:
        return hashlib.md5(self.ja3s.encode()).hexdigest()

    def __repr__(self):
        return f"<ServerHello {version_name(self.selected_version)} cipher=0x{self.cipher:04x}>"


def parse_client_hello(body: bytes) -> ClientHello:
    return ClientHello(body)


def parse_server_hello(body: bytes) -> ServerHello:
    return ServerHello(body)


def parse_certificates(body: bytes, tls13: bool = False) -> List[bytes]:
    """The DER certificates of a Certificate message (RFC 5246 §7.4.2; with
    ``tls13``, RFC 8446 §4.4.2: a request context first and extensions after
    each entry), server's first."""
    r = _Reader(body, "Certificate")
    if tls13:
        r.vec(1, "certificate_request_context")
    chain = r.sub(3, "certificate_list")
    out = []
    while chain.left:
        out.append(chain.vec(3, "cert_data"))
        if tls13:
            chain.vec(2, "extensions")
    return out


#: attribute short names as Suricata writes distinguished names
_DN_NAMES = {"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O",
             "2.5.4.11": "OU", "2.5.4.3": "CN", "1.2.840.113549.1.9.1": "Email",
             "2.5.4.5": "serialNumber", "2.5.4.9": "street", "2.5.4.17": "postalCode",
             "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
             "2.5.4.15": "businessCategory", "0.9.2342.19200300.100.1.25": "DC",
             "0.9.2342.19200300.100.1.1": "UID",
             "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
             "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionStateOrProvinceName",
             "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionLocalityName"}


def _dn(name) -> str:
    parts = []
    for rdn in name.rdns:
        attrs = []
        for a in rdn:
            v = a.value if isinstance(a.value, str) else a.value.hex()
            attrs.append(f"{_DN_NAMES.get(a.oid.dotted_string, a.oid.dotted_string)}={v}")
        parts.append(" + ".join(attrs))
    return ", ".join(parts)


class Certificate:
    """One X.509 certificate (DER), decoded by the ``cryptography`` package
    on first use.  ``subject`` and ``issuer`` in Suricata's form ("C=US,
    O=..., CN=..."), ``serial`` ("0A:1B:..."), ``fingerprint`` (SHA-1,
    "aa:bb:..."), ``not_before`` / ``not_after`` (naive UTC datetimes),
    ``sans`` (DNS names).  A certificate the decoder refuses has ``error``
    set and empty fields, never an exception from the accessors."""

    __slots__ = ("der", "_x509", "error")

    def __init__(self, der: bytes):
        self.der = der
        self._x509 = None
        self.error = None

    def _cert(self):
        if self._x509 is None and self.error is None:
            from cryptography import x509
            try:
                self._x509 = x509.load_der_x509_certificate(self.der)
            except Exception as exc:     # noqa: BLE001 - any decoder refusal is reported
                self.error = f"{type(exc).__name__}: {exc}"
        return self._x509

    def _field(self, get, default):
        c = self._cert()
        if c is None:
            return default
        try:
            return get(c)
        except Exception as exc:         # noqa: BLE001 - a field the decoder cannot read
            self.error = f"{type(exc).__name__}: {exc}"
            return default

    @property
    def subject(self) -> str:
        return self._field(lambda c: _dn(c.subject), "")

    @property
    def issuer(self) -> str:
        return self._field(lambda c: _dn(c.issuer), "")

    @property
    def serial(self) -> str:
        def get(c):
            n = c.serial_number
            raw = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
            return ":".join("%02X" % b for b in raw)
        return self._field(get, "")

    @property
    def fingerprint(self) -> str:
        return ":".join("%02x" % b for b in hashlib.sha1(self.der).digest())

    @property
    def not_before(self) -> Optional[datetime.datetime]:
        return self._field(lambda c: c.not_valid_before_utc.replace(tzinfo=None), None)

    @property
    def not_after(self) -> Optional[datetime.datetime]:
        return self._field(lambda c: c.not_valid_after_utc.replace(tzinfo=None), None)

    @property
    def sans(self) -> List[str]:
        def get(c):
            from cryptography import x509
            try:
                ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            except x509.ExtensionNotFound:
                return []
            return ext.value.get_values_for_type(x509.DNSName)
        return self._field(get, [])

    def __repr__(self):
        return f"<Certificate {self.subject!r}>"


# ---------------------------------------------------------------- flow view

class TlsFlow:
    """``flow.tls``: the TLS view of one flow, read afresh at each access."""
    __slots__ = ("_flow", "_owner")

    def __init__(self, flow, owner: "Tls"):
        self._flow = flow
        self._owner = owner

    def _state(self):
        return self._owner._state(self._flow)

    def _message(self, which: int):
        cap = self._state()
        return _tls.message(cap, which) if cap is not None else None

    def _parsed(self, which, parse):
        body = self._message(which)
        if body is None:
            return None
        cache = self._owner._cache
        key = (self._flow.id, which)
        hit = cache.get(key)
        if hit is not None and hit[0] == body:
            return hit[1]
        try:
            obj = parse(body)
        except TlsParseError:
            obj = None
            self._owner.parse_errors += 1
        cache[key] = (body, obj)
        if len(cache) > 4096:
            cache.pop(next(iter(cache)))
        return obj

    @property
    def client_hello(self) -> Optional[ClientHello]:
        return self._parsed(0, ClientHello)

    @property
    def server_hello(self) -> Optional[ServerHello]:
        return self._parsed(1, ServerHello)

    @property
    def certificates(self) -> List[Certificate]:
        sh = self.server_hello
        tls13 = sh is not None and sh.selected_version not in (0x0300, 0x0301, 0x0302, 0x0303)
        chain = self._parsed(2, lambda b: [Certificate(d) for d in parse_certificates(b, tls13)])
        return chain or []

    @property
    def version(self) -> Optional[int]:
        """The negotiated version (the ServerHello's), else the ClientHello's."""
        sh = self.server_hello
        if sh is not None:
            return sh.selected_version
        ch = self.client_hello
        return ch.version if ch is not None else None

    @property
    def sni(self) -> Optional[str]:
        ch = self.client_hello
        return ch.sni if ch is not None else None

    @property
    def handshake_done(self) -> bool:
        cap = self._state()
        return bool(cap is not None and _tls.flow_state(cap)["handshake_done"])

    @property
    def state(self) -> dict:
        """Record-layer state per direction (started, encrypted, records, stopped)."""
        cap = self._state()
        return _tls.flow_state(cap) if cap is not None else {}

    @property
    def anomaly(self) -> Optional[str]:
        try:
            info = self._flow.event_info
        except HandlerContextError:
            return None
        code = getattr(info, "code", None)
        if code is None or code != MAGIC | _K["anomaly"]:
            return None
        return _tls.ANOMALIES.get(info.b)


class Tls(AttachedParser):
    """Follows TLS on an engine's flows (all TCP flows; a direction that does
    not start with a TLS handshake record is dropped at its first bytes)."""

    registry: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    what = "follows TLS"
    view = TlsFlow

    def __init__(self):
        self.parser = _tls.TlsParser()
        super().__init__()
        self.parse_errors = 0
        self._cache: dict = {}

    def stats(self) -> dict:
        return dict(self.parser.stats(), parse_errors=self.parse_errors)


def for_engine(engine) -> Tls:
    """The Tls on ``engine``, attached now if none is (apps share one)."""
    t = Tls.registry.get(engine)
    return t if t is not None else Tls().attach(engine)


flow_attribute("tls", Tls.of_flow)
