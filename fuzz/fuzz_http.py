"""Atheris harness for the HTTP layer (mos.app.http on libhtp, and the IDS's
HTTP buffers), fed through the engine as a real TCP conversation.

Input layout: 2 bytes (big-endian) where the client's stream ends and the
server's begins, 1 byte of flags (bit 7: first segment sent last, i.e. out of
order; bits 0-3: how many cut points follow), the cut points (2 bytes
each, big-endian) that split both streams into segments, then the bytes.  The handlers read every field a user can
(request and response halves, headers, bodies, anomalies, every IDS
buffer).  Invariant: nothing raises and nothing crashes; a libhtp fault
would stop the process (libFuzzer reports it), a Python exception stops
atheris with the reproducer.

    .venv/bin/python fuzz/fuzz_http.py [libFuzzer flags] [corpus dirs or a file]
"""

import sys

import atheris
import dpkt

with atheris.instrument_imports(include=["mos.app.http", "middleboxes.ids.buffers"]):
    from mos.app import http
    from middleboxes.ids.buffers import TxBuffers

import mos

C_IP, S_IP = bytes([198, 18, 0, 1]), bytes([198, 19, 0, 1])
BUFFERS = ("http.method", "http.uri", "http.uri.raw", "http.protocol", "http.request_line",
           "http.header", "http.header_names", "http.host", "http.host.raw", "http.user_agent",
           "http.cookie", "http.start", "http.request_body", "http.stat_code", "http.stat_msg",
           "http.server", "http.location", "http.response_body", "res:http.header",
           "raw:req", "raw:res")


def _frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                       flags=flags, win=65535, data=payload)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                        type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def conversation(data: bytes) -> list:
    if len(data) < 3:
        return []
    split, flags = int.from_bytes(data[:2], "big"), data[2]
    n = flags & 15
    cuts = [int.from_bytes(data[3 + 2 * i:5 + 2 * i], "big") for i in range(n)]
    shuffle = bool(flags & 0x80)
    rest = data[3 + 2 * n:]
    cli, srv = rest[:split], rest[split:]
    ci, si = 1000, 50000
    frames = [_frame(C_IP, S_IP, 40000, 80, ci, 0, 0x02),
              _frame(S_IP, C_IP, 80, 40000, si, ci + 1, 0x12),
              _frame(C_IP, S_IP, 40000, 80, ci + 1, si + 1, 0x10)]
    for data_, src, dst, sp, dp, isn, peer in ((cli, C_IP, S_IP, 40000, 80, ci, si),
                                               (srv, S_IP, C_IP, 80, 40000, si, ci)):
        bounds = sorted({0, len(data_), *(c for c in cuts if c < len(data_))})
        segs = [_frame(src, dst, sp, dp, isn + 1 + a, peer + 1, 0x18, data_[a:b])
                for a, b in zip(bounds, bounds[1:])]
        if shuffle and len(segs) > 1:
            segs = segs[1:] + segs[:1]     # the first segment last: out of order
        frames += segs
    return frames


def _read(flow, side, event) -> None:
    h = flow.http
    if h is None:
        return
    _ = h.anomaly, h.body, h.stopped
    for tx in h.transactions:
        req, res = tx.request, tx.response
        for msg in (req, res):
            if msg is not None:
                _ = msg.header("host"), msg.header_bytes("cookie"), repr(msg)
        if req is not None:
            b = TxBuffers(req, res, h.body, h.body)
            for name in BUFFERS:
                b.get(name)
                b.get(name, ("to_lowercase", "compress_whitespace", "url_decode"))


def TestOneInput(data: bytes) -> None:
    eng = mos.Engine(mos.Config(checksum="ignore", on_handler_error="raise"))
    http.Http(bodies=True, arena_max=4096).attach(eng)
    mon = eng.attach(mos.Monitor(name="fuzz"))
    for ev in (http.HTTP_REQUEST_LINE, http.HTTP_REQUEST, http.HTTP_RESPONSE, http.HTTP_BODY,
               http.HTTP_DONE, http.HTTP_ANOMALY):
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
