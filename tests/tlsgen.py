"""Real TLS conversations as frames: OpenSSL (Python's ssl module over
memory BIOs) makes the handshake and records, ``cryptography`` makes a CA
and a server certificate, tcpconv.Conv puts the bytes into TCP segments.

    frames, info = tls_conversation(version="1.2", sni="www.example.org")

``python tests/tlsgen.py OUT.pcap`` writes the capture shipped as
mos/data/tls.pcap (two flows: TLS 1.2 with a two-certificate chain, and
TLS 1.3), used by the doctest of mos.app.tls."""

from __future__ import annotations

import datetime
import os
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tcpconv import Conv  # noqa: E402


def make_chain(cn="www.example.org", ca_cn="mos test CA"):
    """(CA cert PEM, server cert PEM, server key PEM, server cert DER, CA DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common, org):
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    start = datetime.datetime(2026, 1, 1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(ca_cn, "mos CA"))
          .issuer_name(name(ca_cn, "mos CA")).public_key(ca_key.public_key())
          .serial_number(0x1234).not_valid_before(start)
          .not_valid_after(start + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(cn, "mos example"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(0x83A84592F77F2E7).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.DER),
            ca.public_bytes(serialization.Encoding.DER))


_CHAIN = None


def chain():
    global _CHAIN
    if _CHAIN is None:
        _CHAIN = make_chain()
    return _CHAIN


def handshake_chunks(version="1.2", sni="www.example.org", alpn=("h2", "http/1.1"),
                     request=b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
                     response=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"):
    """The bytes each side writes, in order: a list of ("c" or "s", bytes)."""
    ca_pem, cert_pem, key_pem, _, _ = chain()
    with tempfile.TemporaryDirectory() as d:
        certfile = os.path.join(d, "chain.pem")
        keyfile = os.path.join(d, "key.pem")
        with open(certfile, "wb") as f:
            f.write(cert_pem + ca_pem)
        with open(keyfile, "wb") as f:
            f.write(key_pem)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(certfile, keyfile)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    for ctx in (sctx, cctx):
        v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = v
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(cin, cout, server_hostname=sni)
    s = sctx.wrap_bio(sin, sout, server_side=True)
    out = []

    def pump():
        moved = False
        b = cout.read()
        if b:
            out.append(("c", b))
            sin.write(b)
            moved = True
        b = sout.read()
        if b:
            out.append(("s", b))
            cin.write(b)
            moved = True
        return moved

    done = [False, False]
    for _ in range(50):
        for i, end in enumerate((c, s)):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        if not pump() and all(done):
            break
    c.write(request)
    pump()
    got = s.read(65536)
    assert got == request, got
    s.write(response)
    pump()
    assert c.read(65536) == response
    return out


def tls_conversation(version="1.2", client=("198.18.0.1", 40000), server=("198.18.0.2", 443),
                     mss=1448, **kw):
    """Frames (ts, bytes) of a whole flow: handshake, TLS bytes, FIN both ways."""
    conv = Conv(client=client, server=server)
    conv.handshake()
    for who, data in handshake_chunks(version, **kw):
        for i in range(0, len(data), mss):
            conv.send(who, data[i:i + mss])
        conv.ack("s" if who == "c" else "c")
    conv.fin("c")
    conv.ack("s")
    conv.fin("s")
    conv.ack("c")
    return conv.frames


def write_pcap(path, frames):
    import dpkt
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535)
        for ts, frame in frames:
            w.writepkt(frame, ts)


if __name__ == "__main__":
    frames = tls_conversation("1.2")
    later = tls_conversation("1.3", client=("198.18.0.1", 40002))
    frames += [(ts + 10.0, fr) for ts, fr in later]
    write_pcap(sys.argv[1], frames)
    print(f"{sys.argv[1]}: {len(frames)} frames")
