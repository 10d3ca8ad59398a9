"""HTTP buffers for rules: what each sticky buffer holds for one transaction,
built from mos.app.http's Request and Response (once per transaction and
buffer, only for buffers some candidate rule inspects), and the transforms.

Layouts follow Suricata's: header buffers hold ``Name: value\\r\\n`` per
header in wire order; ``http.header_names`` is ``\\r\\nName\\r\\n...\\r\\n``;
``http.request_line`` is the line without its CRLF; ``http.start`` is the
line and the headers as a header block; ``http.uri`` is the URI normalised
(percent-decoded path with dot segments removed, query kept) and
``http.uri.raw`` as sent; ``http.host`` the host name lowercased, without
a port.

>>> from mos.app.http import Request
>>> r = Request({"line": b"GET /a/../b%41?q=1 HTTP/1.1", "method": b"GET",
...              "uri": b"/a/../b%41?q=1", "protocol": b"HTTP/1.1",
...              "headers": [(b"Host", b"Ex.test:8080"), (b"User-Agent", b"t")],
...              "host": b"ex.test", "port": 8080, "body_length": 0, "complete": True})
>>> b = TxBuffers(r, None)
>>> b.get("http.uri"), b.get("http.host"), b.get("http.header_names")
(b'/bA?q=1', b'ex.test', b'\\r\\nHost\\r\\nUser-Agent\\r\\n\\r\\n')
>>> b.get("http.header", ("to_lowercase",))
b'host: ex.test:8080\\r\\nuser-agent: t\\r\\n'
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional
from urllib.parse import unquote_to_bytes

#: body bytes kept per transaction and direction (Suricata's request-body-limit
#: and response-body-limit defaults)
BODY_LIMIT = 100 * 1024


def normalize_uri(raw: bytes) -> bytes:
    """Path percent-decoded and dot segments removed (RFC 3986 5.2.4), query
    and fragment kept as sent."""
    path, sep, rest = raw.partition(b"?")
    p = unquote_to_bytes(path)
    out: list = []
    for seg in p.split(b"/"):
        if seg == b"..":
            if len(out) > 1:
                out.pop()
        elif seg != b".":
            out.append(seg)
    norm = b"/".join(out)
    if p.endswith((b"/.", b"/..")):
        norm += b"/"
    return norm + sep + rest


def _headers(pairs) -> bytes:
    return b"".join(k + b": " + v + b"\r\n" for k, v in pairs)


def _header(pairs, name: bytes) -> Optional[bytes]:
    vals = [v for k, v in pairs if k.lower() == name]
    return b", ".join(vals) if vals else None


_WS = re.compile(rb"[ \t\r\n\v\f]+")


def transform(data: bytes, name: str) -> bytes:
    if name == "to_lowercase":
        return data.lower()
    if name == "to_uppercase":
        return data.upper()
    if name == "strip_whitespace":
        return _WS.sub(b"", data)
    if name == "compress_whitespace":
        return _WS.sub(b" ", data)
    if name == "dotprefix":
        return b"." + data
    if name == "url_decode":
        return unquote_to_bytes(data.replace(b"+", b" "))
    if name in ("to_sha256", "to_md5", "to_sha1"):
        return hashlib.new(name[3:], data).digest()
    if name == "header_lowercase":     # names only, values as they are
        out = []
        for ln in data.splitlines(keepends=True):
            name_, colon, rest = ln.partition(b":")
            out.append(name_.lower() + colon + rest if colon else ln)
        return b"".join(out)
    if name == "strip_pseudo_headers":
        return data   # HTTP/1 has none
    raise ValueError(f"unknown transform {name!r}")


class TxBuffers:
    """The buffers of one transaction: ``get(name, transforms)`` gives the
    bytes, or None when the transaction has no such buffer (a rule that
    inspects it cannot match).  A body may be given as a callable, read
    when a buffer first needs it."""

    def __init__(self, req, res, req_body=b"", res_body=b""):
        self.req, self.res = req, res
        self.bodies = [req_body, res_body]
        self._cache: dict = {}

    def _body(self, i: int) -> bytes:
        b = self.bodies[i]
        if callable(b):
            b = self.bodies[i] = b()
        return b

    def get(self, name: str, transforms: tuple = ()) -> Optional[bytes]:
        key = (name, transforms)
        if key in self._cache:
            return self._cache[key]
        data = self._raw(name)
        if data is not None:
            for t in transforms:
                data = transform(data, t)
        self._cache[key] = data
        return data

    def _raw(self, name: str) -> Optional[bytes]:
        if name in ("raw:req", "raw:res"):
            # the message as sent, for stream options in an HTTP rule: line,
            # headers, body so far
            msg = self.req if name == "raw:req" else self.res
            if msg is None:
                return None
            return ((msg.line or b"") + b"\r\n" + _headers(msg.headers) + b"\r\n"
                    + self._body(0 if name == "raw:req" else 1))
        response = name.startswith("res:")
        if response:
            name = name[4:]
        req, res = self.req, self.res
        if name in ("http.stat_code", "http.stat_msg", "http.response_line", "http.server",
                    "http.location", "http.response_body") or response:
            if res is None:
                return None
            if name == "http.stat_code":
                return str(res.status).encode() if res.status is not None else None
            if name == "http.stat_msg":
                return (res.message or "").encode("latin-1")
            if name == "http.response_line":
                return res.line
            if name == "http.response_body":
                return self._body(1)
            msg = res
        else:
            if req is None:
                return None
            if name == "http.method":
                return (req.method or "").encode("latin-1")
            if name == "http.uri.raw":
                return (req.uri or "").encode("latin-1")
            if name == "http.uri":
                return normalize_uri((req.uri or "").encode("latin-1"))
            if name == "http.protocol":
                return (req.protocol or "").encode("latin-1")
            if name == "http.request_line":
                return req.line
            if name == "http.host":
                return (req.host or "").lower().encode("latin-1") if req.host else None
            if name == "http.request_body":
                return self._body(0)
            msg = req
        h = msg.headers
        if name in ("http.header", "http.header.raw"):
            return _headers(h)
        if name == "http.header_names":
            return b"\r\n" + b"".join(k + b"\r\n" for k, _ in h) + b"\r\n"
        if name == "http.start":
            return (msg.line or b"") + b"\r\n" + _headers(h) + b"\r\n"
        field = {"http.host.raw": b"host", "http.user_agent": b"user-agent",
                 "http.cookie": b"set-cookie" if response else b"cookie",
                 "http.content_type": b"content-type", "http.content_len": b"content-length",
                 "http.referer": b"referer", "http.accept": b"accept",
                 "http.accept_lang": b"accept-language", "http.accept_enc": b"accept-encoding",
                 "http.connection": b"connection", "http.server": b"server",
                 "http.location": b"location"}.get(name)
        if field is None:
            raise ValueError(f"unknown HTTP buffer {name!r}")
        return _header(h, field)
