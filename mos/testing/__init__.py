"""Test support that ships with mos: the network-namespace test bed
(``mos.testing.testbed``, also ``mos testbed up|down``).  Nothing in the
runtime or the core imports this package."""

import os as _os


def tls_capture() -> str:
    """Path of the TLS capture shipped with mos (made by tests/tlsgen.py with
    OpenSSL: a TLS 1.2 flow with a two-certificate chain, then a TLS 1.3
    flow; SNI www.example.org, ALPN h2 and http/1.1; 198.18.0.0/15)."""
    return _os.path.join(_os.path.dirname(_os.path.dirname(__file__)), "data", "tls.pcap")
