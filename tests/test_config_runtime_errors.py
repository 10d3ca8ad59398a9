"""Configuration errors that only a run finds (issue 8: "Config errors found at
run time name no file, line or key"): no such interface, an option the
driver does not take, a missing app or capture file.  Each names the
settings file, the line of the key and the key, as parse-time errors do
(``FILE:LINE: KEY: reason``, STYLE.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import dpkt
import pytest

from mos.errors import ConfigError
from mos.runtime.apps import load_app
from mos.runtime.ports import open_port
from mos.settings import load_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mos", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def empty_pcap(path):
    with open(path, "wb") as fh:
        dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
    return path


def settings_file(tmp_path, text):
    conf = tmp_path / "mos.yaml"
    conf.write_text(text)
    return conf


AFPACKET = """\
ports:
  - name: west
    driver: afpacket
    iface: {iface}
    options:
      rx_ring: v2
      {opt}
  - {{name: east, driver: afpacket, iface: lo}}
forward: [[west, east]]
"""


def test_afpacket_no_such_interface_names_file_line_key(tmp_path):
    """The interface is looked up when the port opens (if_nametoindex), not at load."""
    conf = settings_file(tmp_path, AFPACKET.format(iface="mosnoif9", opt="poll_ms: 1"))
    s = load_settings(conf)
    with pytest.raises(ConfigError) as ei:
        open_port(s.ports[0], s, None)
    assert str(ei.value) == (f"{conf}:4: ports[west].iface: 'mosnoif9': no such interface "
                             f"(in this network namespace)")


def test_afpacket_unknown_option_names_file_line_key(tmp_path):
    conf = settings_file(tmp_path, AFPACKET.format(iface="mosnoif8", opt="ring_size: 4"))
    s = load_settings(conf)
    with pytest.raises(ConfigError) as ei:
        open_port(s.ports[0], s, None)
    msg = str(ei.value)
    assert msg.startswith(f"{conf}:7: ports[west].options: unknown afpacket option 'ring_size'")
    assert "known: block_bytes, poll_ms, retire_ms, rx_ring, tx" in msg


def test_afpacket_bad_option_value_names_its_key(tmp_path):
    conf = settings_file(tmp_path, AFPACKET.format(iface="mosnoif9", opt="tx: carrier-pigeon"))
    s = load_settings(conf)
    with pytest.raises(ConfigError) as ei:
        open_port(s.ports[0], s, None)
    assert str(ei.value).startswith(f"{conf}:7: ports[west].options.tx: 'carrier-pigeon' is not "
                                    f"one of")


def test_pcap_unknown_option_and_missing_capture_name_file_line_key(tmp_path):
    cap = empty_pcap(tmp_path / "in.pcap")
    conf = settings_file(tmp_path, f"""\
ports:
  - name: a
    driver: pcap
    path: {cap}
    options:
      loop: true
  - name: b
    driver: pcap
    path: missing.pcap
forward: [[a, b]]
""")
    s = load_settings(conf)
    with pytest.raises(ConfigError) as ei:
        open_port(s.ports[0], s, None)
    assert str(ei.value) == \
        f"{conf}:6: ports[a].options: unknown pcap option 'loop' (known: write)"
    with pytest.raises(ConfigError) as ei:
        open_port(s.ports[1], s, None)
    msg = str(ei.value)
    assert msg.startswith(f"{conf}:9: ports[b].path: ") and "missing.pcap" in msg


def test_missing_app_file_from_settings_names_file_line_key(tmp_path):
    """`app:` in the settings names a file that is not there: the run stops with
    one line naming the settings file, the line and the key."""
    cap = empty_pcap(tmp_path / "in.pcap")
    conf = settings_file(tmp_path, f"""\
ports:
  - {{name: a, driver: pcap, path: {cap}}}
  - {{name: b, driver: pcap, path: {cap}}}
forward: [[a, b]]
app: no_such_app.py
""")
    s = load_settings(conf)
    with pytest.raises(ConfigError) as ei:
        load_app(s.app, s)
    missing = os.path.join(str(tmp_path), "no_such_app.py")
    assert str(ei.value) == f"{conf}:5: app: no such file {missing!r}"
    r = run("run", "-c", str(conf), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"mos: error: {conf}:5: app: no such file {missing!r}"


def test_missing_app_file_from_command_line_names_the_option(tmp_path):
    """An --app given on the command line is no key of the file: the message says --app."""
    cap = empty_pcap(tmp_path / "in.pcap")
    conf = settings_file(tmp_path, f"""\
ports:
  - {{name: a, driver: pcap, path: {cap}}}
  - {{name: b, driver: pcap, path: {cap}}}
forward: [[a, b]]
""")
    r = run("run", "-c", str(conf), "--no-progress", "--app", "nope/x.py")
    assert r.returncode == 2
    assert "--app: no such file 'nope/x.py'" in r.stderr


def test_afpacket_no_such_interface_through_the_cli(tmp_path):
    """The same error from `mos run -c`: one line, file, line and key."""
    conf = settings_file(tmp_path, AFPACKET.format(iface="mosnoif9", opt="poll_ms: 1"))
    r = run("run", "-c", str(conf), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{conf}:4: ports[west].iface: 'mosnoif9': no such interface" in r.stderr
