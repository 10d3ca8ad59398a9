"""IDS output: Suricata's EVE JSON and fast.log, to files or a Unix socket.

Records are shaped as Suricata 7 writes them, so tools that ingest Suricata's
eve.json (Filebeat, Logstash, Vector, jq scripts) take mos's unchanged:

>>> import io, json
>>> out = io.StringIO()
>>> ev = Eve(out)
>>> ev.write({"timestamp": eve_time(0.5), "event_type": "stats"})
>>> json.loads(out.getvalue())["timestamp"]
'1970-01-01T00:00:00.500000+0000'
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import os
import socket
import time
from typing import Optional

PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP"}


def eve_ip(ip: str) -> str:
    """An address as EVE writes it: IPv6 in full, every group four digits
    (Suricata's form, which its consumers and tests compare as text).

    >>> eve_ip("2001:db8::1"), eve_ip("198.18.0.1")
    ('2001:0db8:0000:0000:0000:0000:0000:0001', '198.18.0.1')
    """
    return ipaddress.IPv6Address(ip).exploded if ":" in ip else ip


def eve_time(ts: float) -> str:
    """Suricata's EVE timestamp: local time is not used, +0000 always."""
    sec = int(ts)
    usec = int(round((ts - sec) * 1e6))
    if usec == 1000000:
        sec, usec = sec + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{usec:06d}+0000"


def fast_time(ts: float) -> str:
    """fast.log's timestamp: 11/24/2009-21:27:09.534255."""
    sec = int(ts)
    usec = int(round((ts - sec) * 1e6))
    if usec == 1000000:
        sec, usec = sec + 1, 0
    return time.strftime("%m/%d/%Y-%H:%M:%S", time.gmtime(sec)) + f".{usec:06d}"


def metadata_dict(items) -> dict:
    """Rule metadata "key value" strings -> {key: [value, ...]} as EVE has it."""
    out: dict = {}
    for item in items:
        key, _, value = item.strip().partition(" ")
        out.setdefault(key, []).append(value.strip())
    return out


def printable(data: bytes) -> str:
    """payload_printable: printable ASCII kept, the rest as '.'."""
    return "".join(chr(b) if 32 <= b < 127 or b in (9, 10, 13) else "." for b in data)


class UnixStreamSink:
    """A line sink on a Unix stream socket (Suricata's ``filetype: unix_stream``).
    A reader that is not there, or goes away, costs the records written
    meanwhile (counted in ``dropped``); the sink reconnects on the next write
    at most once a second, and never blocks the IDS for long."""

    def __init__(self, path: str, timeout: float = 0.5):
        self.path = path
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None
        self.dropped = 0
        self.written = 0
        self._next_try = 0.0

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + 1.0
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            return False
        self.sock = s
        return True

    def write(self, line: str) -> None:
        if self.sock is None and not self._connect():
            self.dropped += 1
            return
        try:
            self.sock.sendall(line.encode("utf-8"))
            self.written += 1
        except OSError:
            self.sock.close()
            self.sock = None
            self.dropped += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Eve:
    """Writes EVE records, one JSON object per line, to a text stream, a
    file path, or a Unix socket (``unix_stream:/path``)."""

    def __init__(self, target, *, append: bool = False):
        self._own = False
        if isinstance(target, str):
            if target.startswith("unix_stream:"):
                self.out = UnixStreamSink(target[len("unix_stream:"):])
            else:
                # appending (workers sharing one file): a write per line, so
                # records from several processes never interleave
                self.out = open(target, "a" if append else "w", encoding="utf-8",
                                buffering=1 if append else -1)
            self._own = True
        else:
            self.out = target
        self.records = 0

    def write(self, rec: dict) -> None:
        self.out.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.records += 1

    def close(self) -> None:
        if self._own:
            self.out.close()
        else:
            self.out.flush()


def alert_record(*, ts: float, rule, classes: Optional[dict], src: tuple, dst: tuple,
                 direction: str, flow_id: int, pcap_cnt: Optional[int] = None,
                 action: str = "allowed", payload: Optional[bytes] = None,
                 stream: bool = False, flow: Optional[dict] = None,
                 tx_id: Optional[int] = None, packet: Optional[bytes] = None,
                 linktype: Optional[int] = None, pkt_src: str = "wire/pcap",
                 app: Optional[dict] = None) -> dict:
    """One ``event_type: alert`` record.  src/dst are (ip, port) of the packet
    that completed the match; direction is to_server or to_client."""
    category = ""
    severity = rule.priority if rule.priority is not None else 3
    if rule.classtype and classes and rule.classtype in classes:
        category = classes[rule.classtype][0]
    rec = {"timestamp": eve_time(ts), "flow_id": flow_id}
    if pcap_cnt is not None:
        rec["pcap_cnt"] = pcap_cnt
    rec.update({"event_type": "alert", "src_ip": eve_ip(src[0]), "src_port": src[1],
                "dest_ip": eve_ip(dst[0]), "dest_port": dst[1], "proto": "TCP",
                "pkt_src": pkt_src, "direction": direction})
    if tx_id is not None:
        rec["tx_id"] = tx_id
    alert = {"action": action, "gid": rule.gid, "signature_id": rule.sid, "rev": rule.rev,
             "signature": rule.msg, "category": category, "severity": severity}
    if rule.metadata:
        alert["metadata"] = metadata_dict(rule.metadata)
    rec["alert"] = alert
    if app is not None:           # e.g. {"app_proto": "http", "http": {...}}
        rec.update(app)
    if flow is not None:
        rec["flow"] = flow
    if payload is not None:
        rec["payload"] = base64.b64encode(payload).decode("ascii")
        rec["payload_printable"] = printable(payload)
        rec["stream"] = 1 if stream else 0
    if packet is not None:
        rec["packet"] = base64.b64encode(packet).decode("ascii")
        if linktype is not None:
            rec["packet_info"] = {"linktype": linktype}
    return rec


def http_record(req, res) -> dict:
    """The ``http`` object of EVE records (Suricata's field names) for a
    mos.app.http Request and Response (either may be None)."""
    h: dict = {}
    if req is not None:
        host = req.host or req.header("host")
        if host:
            h["hostname"] = host
        h["url"] = req.uri
        for key, name in (("http_user_agent", "user-agent"), ("http_refer", "referer")):
            v = req.header(name)
            if v is not None:
                h[key] = v
    if res is not None:
        v = res.header("content-type")
        if v is not None:
            h["http_content_type"] = v
    if req is not None:
        h["http_method"] = req.method
        h["protocol"] = req.protocol
    if res is not None:
        if res.status is not None:
            h["status"] = res.status
        v = res.header("location")
        if v is not None:
            h["redirect"] = v
        h["length"] = res.body_length
    return h


def fast_line(*, ts: float, rule, classes: Optional[dict], src: tuple, dst: tuple,
              action: str = "allowed") -> str:
    """One fast.log line, as Suricata writes it."""
    cls = ""
    if rule.classtype and classes and rule.classtype in classes:
        cls = classes[rule.classtype][0]
    prio = rule.priority if rule.priority is not None else 3
    drop = "[Drop] " if action == "blocked" else ""

    def ep(a):
        ip, port = a
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return (f"{fast_time(ts)}  {drop}[**] [{rule.gid}:{rule.sid}:{rule.rev}] {rule.msg} [**] "
            f"[Classification: {cls}] [Priority: {prio}] {{TCP}} {ep(src)} -> {ep(dst)}\n")


def open_output_dir(path: str) -> str:
    """Create the log directory (-l); an unusable one is a clear error."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno or errno.EIO,
                      f"log directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, f"log directory {path}: not writable")
    return path
