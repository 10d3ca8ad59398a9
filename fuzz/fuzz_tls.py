"""Atheris harness for TLS (mos.app._tls's record layer in C, and
mos.app.tls's hello and certificate parsers in Python).

Input layout as fuzz_http.py: 2 bytes (big-endian) where the client's
stream ends and the server's begins, 1 byte of flags (bit 7: first segment
last; bit 6: also drop the second segment of each direction, a gap; bits
0-3: how many cut points follow), the cut points (2 bytes each), then the
bytes.  Each input runs twice: on the record layer alone (Framer, with the
gap as a hole) and through the engine as a TCP conversation, with handlers
reading every field.  Invariant: nothing raises but TlsParseError, which
the accessors turn into None; nothing crashes.

    .venv/bin/python fuzz/fuzz_tls.py [libFuzzer flags] [corpus dirs or a file]
"""

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["mos.app.tls"]):
    from mos.app import _tls, tls

import mos
from fuzz_http import conversation


def _fields(ch, sh, chain):
    if ch is not None:
        _ = ch.ja3_hash, ch.ja4, ch.sni, ch.alpn, repr(ch)
    if sh is not None:
        _ = sh.ja3s_hash, sh.is_retry, repr(sh)
    for c in chain:
        _ = c.subject, c.issuer, c.serial, c.fingerprint, c.not_before, c.not_after, c.sans


def _parse(body, parse):
    if body is None:
        return None
    try:
        return parse(body)
    except tls.TlsParseError:
        return None


def framer(data: bytes) -> None:
    if len(data) < 3:
        return
    split, flags = int.from_bytes(data[:2], "big"), data[2]
    n = flags & 15
    cuts = [int.from_bytes(data[3 + 2 * i:5 + 2 * i], "big") for i in range(n)]
    rest = data[3 + 2 * n:]
    fr = _tls.Framer()
    for d, stream in ((1, rest[:split]), (0, rest[split:])):
        bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            if k == 1 and flags & 0x40:
                fr.feed(d, None, b - a)
            else:
                fr.feed(d, stream[a:b])
    ch = _parse(fr.message(0), tls.parse_client_hello)
    sh = _parse(fr.message(1), tls.parse_server_hello)
    certs = _parse(fr.message(2), lambda b: [tls.Certificate(x) for x in
                                            tls.parse_certificates(b, bool(flags & 0x20))]) or []
    _fields(ch, sh, certs)
    fr.state()


def _read(flow, side, event) -> None:
    t = flow.tls
    if t is None:
        return
    _fields(t.client_hello, t.server_hello, t.certificates)
    _ = t.version, t.sni, t.handshake_done, t.state, t.anomaly


def TestOneInput(data: bytes) -> None:
    framer(data)
    eng = mos.Engine(mos.Config(checksum="ignore", on_handler_error="raise"))
    tls.Tls().attach(eng)
    mon = eng.attach(mos.Monitor(name="fuzz"))
    for ev in (tls.TLS_CLIENT_HELLO, tls.TLS_SERVER_HELLO, tls.TLS_CERTIFICATE,
               tls.TLS_HANDSHAKE_DONE, tls.TLS_ANOMALY):
        mon.on(ev, _read)
    mon.on(mos.Event.CONN_END, _read)
    for i, fr in enumerate(conversation(data)):
        eng.feed(fr, 1.0 + i * 0.001)
    eng.close()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
