"""EVE and fast.log records of the IDS (middleboxes/ids/eve.py)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading

from middleboxes.ids.eve import (Eve, alert_record, eve_time, fast_line, metadata_dict,
                                 printable)
from middleboxes.ids.rules import parse_rule

CLASSES = {"bad-unknown": ("Potentially Bad Traffic", 2)}
RULE = parse_rule('alert tcp any any -> any any (msg:"GPL ATTACK_RESPONSE id check returned '
                  'root"; content:"uid=0|28|root|29|"; classtype:bad-unknown; '
                  'metadata:created_at 2010_09_23, updated_at 2019_07_26; sid:2100498; rev:7;)',
                  classes=CLASSES)


def unix_collector(path: str, timeout: float = 60):
    """A collector on a Unix stream socket at `path` (as Filebeat's): it
    takes one connection; the function returned waits for it to close and
    gives every byte sent (b"" if none came in time)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(timeout)
    got = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                buf += d
        got.append(buf)
    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def received() -> bytes:
        t.join(timeout)
        srv.close()
        return got[0] if got else b""
    return received


def test_times_are_suricatas():
    assert eve_time(1258147629.534255) == "2009-11-13T21:27:09.534255+0000"
    assert eve_time(1.9999999) == "1970-01-01T00:00:02.000000+0000"


def test_alert_record_fields():
    rec = alert_record(ts=1258147629.534255, rule=RULE, classes=CLASSES,
                       src=("198.18.0.187", 80), dst=("198.19.2.12", 33186),
                       direction="to_client", flow_id=42, pcap_cnt=7,
                       payload=b"uid=0(root)\n\x00")
    assert list(rec)[:4] == ["timestamp", "flow_id", "pcap_cnt", "event_type"]
    assert rec["event_type"] == "alert" and rec["proto"] == "TCP"
    assert (rec["src_ip"], rec["src_port"], rec["dest_ip"], rec["dest_port"]) == \
        ("198.18.0.187", 80, "198.19.2.12", 33186)
    a = rec["alert"]
    assert (a["action"], a["gid"], a["signature_id"], a["rev"], a["severity"]) == \
        ("allowed", 1, 2100498, 7, 2)
    assert a["category"] == "Potentially Bad Traffic"
    assert a["metadata"] == {"created_at": ["2010_09_23"], "updated_at": ["2019_07_26"]}
    assert base64.b64decode(rec["payload"]) == b"uid=0(root)\n\x00"
    assert rec["payload_printable"] == "uid=0(root)\n."


def test_fast_line():
    line = fast_line(ts=1258147629.534255, rule=RULE, classes=CLASSES,
                     src=("198.18.0.187", 80), dst=("2001:db8::1", 33186))
    assert line == ("11/13/2009-21:27:09.534255  [**] [1:2100498:7] GPL ATTACK_RESPONSE id "
                    "check returned root [**] [Classification: Potentially Bad Traffic] "
                    "[Priority: 2] {TCP} 198.18.0.187:80 -> [2001:db8::1]:33186\n")


def test_eve_to_file_and_to_a_unix_socket(tmp_path):
    p = tmp_path / "eve.json"
    ev = Eve(str(p))
    ev.write({"event_type": "stats"})
    ev.close()
    assert json.loads(p.read_text()) == {"event_type": "stats"}

    path = str(tmp_path / "eve.sock")
    received = unix_collector(path)
    ev = Eve("unix_stream:" + path)
    for i in range(3):
        ev.write({"event_type": "alert", "n": i})
    ev.close()
    lines = received().decode().splitlines()
    assert [json.loads(x)["n"] for x in lines] == [0, 1, 2]


def test_unix_socket_without_reader_counts_drops(tmp_path):
    ev = Eve("unix_stream:" + os.path.join(str(tmp_path), "nobody.sock"))
    ev.write({"a": 1})
    ev.write({"a": 2})
    assert ev.out.dropped == 2 and ev.out.written == 0
    ev.close()


def test_helpers():
    assert metadata_dict(["a b", "a c", "d e f"]) == {"a": ["b", "c"], "d": ["e f"]}
    assert printable(b"ab\x01\xff\r\n") == "ab..\r\n"
    out = io.StringIO()
    Eve(out).write({"x": "é"})
    assert out.getvalue() == '{"x":"é"}\n'


def test_module_examples_run():
    import doctest

    import middleboxes.ids.eve as eve
    res = doctest.testmod(eve)
    assert res.attempted > 0 and res.failed == 0
