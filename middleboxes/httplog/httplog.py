"""One record per HTTP transaction, written when its response completes (or
when its flow ends), in Zeek's ``http.log`` layout or as Suricata EVE
``http`` records.  The whole app is the handlers below: the parsing is
mos.app.http's, in C.

>>> import io, mos
>>> out = io.StringIO()
>>> eng = mos.Engine()
>>> log = HttpLog(out, fmt="eve").attach(eng)
>>> _ = eng.run(mos.sample_capture())
>>> log.close()
>>> import json
>>> rec = json.loads(out.getvalue().splitlines()[0])
>>> rec["event_type"], rec["http"]["http_method"], rec["http"]["url"], rec["http"]["status"]
('http', 'GET', '/index.html', 200)
"""

from __future__ import annotations

import json
import os
from typing import Optional, TextIO

import mos
from mos import Event, Side
from mos.app import http

from middleboxes.ids.eve import eve_ip, eve_time, http_record

ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth",
               "method", "host", "uri", "referrer", "version", "user_agent",
               "request_body_len", "response_body_len", "status_code", "status_msg")
ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "count", "string", "string",
              "string", "string", "string", "string", "count", "count", "count", "string")


def _zeek_str(v) -> str:
    if v is None or v == "":
        return "-"
    s = str(v)
    # Zeek escapes the separator and non-printable bytes as \xNN
    return "".join(c if 32 <= ord(c) < 127 and c not in "\t\\" else f"\\x{ord(c):02x}"
                   for c in s)


class HttpLog:
    """``out``: a text stream; ``fmt``: "zeek" (tab-separated http.log with
    its header) or "eve" (one JSON object per line); ``emit``: instead of
    ``out``, a callable taking each EVE record as a dict (e.g. an IDS's
    Eve writer, so http records join its alerts)."""

    def __init__(self, out: Optional[TextIO], fmt: str = "zeek", emit=None):
        if fmt not in ("zeek", "eve"):
            raise ValueError(f"format must be 'zeek' or 'eve', not {fmt!r}")
        if emit is not None and fmt != "eve":
            raise ValueError("emit takes EVE records: fmt must be 'eve'")
        self.out = out
        self.emit = emit
        self.fmt = fmt
        self.records = 0
        self.closed = False          # the reader went away (`| head`)
        self.http = None             # the engine's mos.app.http parser, at attach
        if fmt == "zeek" and out is not None:
            out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                      "#unset_field\t-\n#path\thttp\n")
            out.write("#fields\t" + "\t".join(ZEEK_FIELDS) + "\n")
            out.write("#types\t" + "\t".join(ZEEK_TYPES) + "\n")

    def attach(self, engine) -> "HttpLog":
        # requests and completed responses are all it logs: no other note
        # (request line, response headers, request done) reaches Python
        self.http = http.for_engine(engine, kinds=("request", "response_done"))
        mon = engine.attach(mos.Monitor(name="httplog"))
        mon.on(http.HTTP_REQUEST, self._request)
        mon.on(http.HTTP_DONE, self._done, side=Side.CLIENT)   # responses only
        mon.on(Event.CONN_END, self._end, side=Side.CLIENT)
        return self

    @staticmethod
    def _seen(flow) -> dict:
        if flow.uctx is None:
            flow.uctx = {}
        return flow.uctx

    def _request(self, flow, side, event) -> None:
        p = flow.packet
        self._seen(flow)[flow.http.tx.index] = (p.ts if p else flow.last_active,
                                                p.number if p else None)

    def _done(self, flow, side, event) -> None:
        """A response is complete: so is its transaction."""
        tx = flow.http.tx
        self._write(flow, tx, *self._seen(flow).pop(tx.index, (flow.last_active, None)))

    def _end(self, flow, side, event) -> None:
        """Transactions whose response never completed."""
        pending = flow.uctx or {}
        h = flow.http
        if h is None:
            return
        for tx in h.transactions:
            if tx.index in pending:
                self._write(flow, tx, *pending.pop(tx.index))

    def _write(self, flow, tx, ts, pcap_cnt) -> None:
        try:
            self._record(flow, tx, ts, pcap_cnt)
        except BrokenPipeError:
            # quiet like other tools in a pipe; the interpreter's last flush
            # at exit would fail again, so the stream now goes to /dev/null
            self.closed = True
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            except (OSError, ValueError, AttributeError):
                pass

    def _record(self, flow, tx, ts, pcap_cnt) -> None:
        if self.closed:
            return
        req, res = tx.request, tx.response
        if req is None:
            return
        self.records += 1
        if self.fmt == "zeek":
            row = (f"{ts:.6f}", f"C{flow.hash:x}", flow.client_ip, flow.client_port,
                   flow.server_ip, flow.server_port, tx.index + 1, req.method,
                   req.header("host"), req.uri, req.header("referer"),
                   (req.protocol or "").replace("HTTP/", "") or None,
                   req.header("user-agent"), req.body_length,
                   res.body_length if res else 0, res.status if res else None,
                   res.message if res else None)
            self.out.write("\t".join(_zeek_str(v) for v in row) + "\n")
            return
        rec = {"timestamp": eve_time(ts), "flow_id": flow.hash}
        if pcap_cnt is not None:
            rec["pcap_cnt"] = pcap_cnt
        rec.update({"event_type": "http", "src_ip": eve_ip(flow.client_ip),
                    "src_port": flow.client_port, "dest_ip": eve_ip(flow.server_ip),
                    "dest_port": flow.server_port, "proto": "TCP", "tx_id": tx.index,
                    "http": http_record(req, res)})
        if self.emit is not None:
            self.emit(rec)
            return
        self.out.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.closed or self.out is None:
            return
        try:
            if self.fmt == "zeek":
                self.out.write("#close\n")
            self.out.flush()
        except BrokenPipeError:
            self.closed = True


def main(capture: str, out: TextIO, fmt: str = "zeek", config: Optional[mos.Config] = None):
    eng = mos.Engine(config or mos.Config())
    log = HttpLog(out, fmt).attach(eng)
    stats = eng.run(capture)
    log.close()
    return log, stats
