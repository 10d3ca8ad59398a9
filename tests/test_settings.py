"""YAML settings: the documented examples load; each error names file:line: key: reason."""

import textwrap
from dataclasses import fields

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import mos
import mos.settings as msettings
from mos.errors import ConfigError
from mos.settings import DpdkSpec, PortSpec, load_settings, parse_settings

AFPACKET = """\
mode: inline
ports:
  - {name: west, driver: afpacket, iface: c1}
  - {name: east, driver: afpacket, iface: s1}
forward: [[west, east]]
"""

DPDK = """\
mode: inline
dpdk:
  eal_args: [--no-huge, -m, "1024", --no-pci, "--vdev=net_af_packet0,iface=c1", "--vdev=net_af_packet1,iface=s1"]
ports:
  - {name: west, driver: dpdk, port_id: 0}
  - {name: east, driver: dpdk, port_id: 1}
forward: [[west, east]]
"""

TWO_AF = """\
ports:
  - {name: west, driver: afpacket, iface: c1}
  - {name: east, driver: afpacket, iface: s1}
"""
FW = TWO_AF + "forward: [[west, east]]\n"  # a valid file; errors come from what follows


def parse(text):
    return parse_settings(textwrap.dedent(text), name="mos.yaml")


def error(text):
    with pytest.raises(ConfigError) as exc:
        parse(text)
    return str(exc.value)


# -- the documented examples ---------------------------------------------------------------


def test_afpacket_example_loads(tmp_path):
    f = tmp_path / "mos.yaml"
    f.write_text(AFPACKET)
    s = load_settings(f)
    assert s.mode == "inline"
    assert s.ports == (PortSpec("west", "afpacket", iface="c1"),
                       PortSpec("east", "afpacket", iface="s1"))
    assert s.forward == (("west", "east"),)
    assert s.dpdk is None and s.workers == 1 and s.app is None
    assert s.engine_config() == mos.Config()
    assert s.peer("west") == "east" and s.peer("east") == "west"
    assert s.port("east").iface == "s1"
    assert s.source == str(f)


def test_dpdk_example_loads(tmp_path):
    f = tmp_path / "mos.yaml"
    f.write_text(DPDK)
    s = load_settings(str(f))
    assert s.dpdk == DpdkSpec(eal_args=("--no-huge", "-m", "1024", "--no-pci",
                                        "--vdev=net_af_packet0,iface=c1",
                                        "--vdev=net_af_packet1,iface=s1"))
    assert [(p.name, p.driver, p.port_id) for p in s.ports] == [("west", "dpdk", 0),
                                                                ("east", "dpdk", 1)]
    assert s.forward == (("west", "east"),)


def test_every_option_set_is_read():
    s = parse("""\
        mode: passive
        workers: 4
        app: middleboxes.midstat
        ports:
          - name: cap
            driver: pcap
            path: /tmp/x.pcap
            burst: 256
            options: {write: /tmp/out.pcap, loop: false}
          - {name: tap-1, driver: afpacket, iface: eth0, rx_ring_mb: 64}
        monitor:
          buffer_size: 1048576
          overlap: last
          midstream: true
          checksum: ignore
          tcp_timeout: 5
          max_flows: 1000
          keep_read: true
          defrag_memory: 0
          defrag_timeout: 2.5
        """)
    assert s.mode == "passive" and s.workers == 4 and s.app == "middleboxes.midstat"
    assert s.forward == ()
    assert s.ports[0] == PortSpec("cap", "pcap", path="/tmp/x.pcap", burst=256,
                                  options={"write": "/tmp/out.pcap", "loop": False})
    assert s.ports[1].rx_ring_mb == 64
    assert s.engine_config() == mos.Config(buffer_size=1 << 20, overlap="last", midstream=True,
                                           checksum="ignore", tcp_timeout=5, max_flows=1000,
                                           keep_read=True, defrag_memory=0, defrag_timeout=2.5)


def test_eal_args_unquoted_number_is_the_text_as_written():
    s = parse(TWO_AF.replace("afpacket, iface: c1", "dpdk, port_id: 0")
              .replace("afpacket, iface: s1", "dpdk, port_id: 0x1")
              + "forward: [[west, east]]\ndpdk: {eal_args: [-m, 1024, -l, 0-1, yes]}\n")
    assert s.dpdk.eal_args == ("-m", "1024", "-l", "0-1", "yes")
    assert s.port("east").port_id == 1
    assert s.dpdk.idle_sleep == 0  # poll mode unless asked
    s = parse(TWO_AF.replace("afpacket, iface: c1", "dpdk, port_id: 0")
              .replace("afpacket, iface: s1", "dpdk, port_id: 1")
              + "forward: [[west, east]]\ndpdk: {eal_args: [], idle_sleep: 50}\n")
    assert s.dpdk.idle_sleep == 50


def test_merge_keys_apply():
    s = parse("""\
        ports:
          - &base {name: west, driver: afpacket, iface: c1, burst: 32}
          - {<<: *base, name: east, iface: s1}
        forward: [[west, east]]
        """)
    assert s.port("east") == PortSpec("east", "afpacket", iface="s1", burst=32)


def test_relative_paths_are_taken_from_the_yaml_folder(tmp_path):
    f = tmp_path / "conf" / "m.yaml"
    f.parent.mkdir()
    f.write_text("mode: passive\napp: apps/ids.py\n"
                 "ports: [{name: a, driver: pcap, path: in.pcap}]\n")
    s = load_settings(f)
    assert s.port("a").path == str(tmp_path / "conf" / "in.pcap")
    assert s.app == str(tmp_path / "conf" / "apps" / "ids.py")


def test_forward_null_in_passive_mode_is_no_pairs():
    s = parse("mode: passive\nforward:\nports: [{name: a, driver: pcap, path: /x.pcap}]\n")
    assert s.forward == ()


def test_docstring_documents_every_option_with_its_default():
    doc = msettings.__doc__
    cfg = mos.Config()
    for f in fields(mos.Config):
        row = next((line for line in doc.splitlines() if line.startswith(f.name + " ")), None)
        assert row is not None, f"monitor.{f.name} missing from the table"
        shown = str(getattr(cfg, f.name)).lower()
        assert f"``{shown}``" in row, (f.name, shown, row)
    for f in fields(PortSpec):
        assert any(line.startswith(f.name + " ") for line in doc.splitlines()), f.name
    for key in ("mode", "ports", "forward", "dpdk", "workers", "monitor", "app", "eal_args"):
        assert any(line.startswith(key + " ") for line in doc.splitlines()), key


# -- errors: one per kind, exact text ------------------------------------------------------


def test_driver_typo_names_file_line_and_key():
    text = "# mos configuration\n" * 11 + textwrap.dedent("""\
        ports:
          - {name: west, driver: afpacket, iface: c1}
          - name: east
            driver: dpdkk
        """)
    assert error(text) == "mos.yaml:15: ports[1].driver: 'dpdkk' is not one of pcap, afpacket, dpdk"
    text = "# mos configuration\n" * 11 + "ports:\n  - {name: west, driver: afpacket, iface: c1}\n" \
        "  - {name: east, driver: dpdkk, port_id: 1}\n"
    assert error(text) == "mos.yaml:14: ports[1].driver: 'dpdkk' is not one of pcap, afpacket, dpdk"


@pytest.mark.parametrize("text, message", [
    # shape of the document
    ("", "mos.yaml:1: ports: required (the file is empty)"),
    ("# only a comment\n", "mos.yaml:1: ports: required (the file is empty)"),
    ("- ports\n", "mos.yaml:1: top level: expected a mapping, got a list"),
    ("ports\n", "mos.yaml:1: top level: expected a mapping, got 'ports'"),
    ("mode: inline\n", "mos.yaml:1: ports: required"),
    # top-level keys
    (FW + "mdoe: inline\n",
     "mos.yaml:5: mdoe: unknown key (did you mean 'mode'?)"),
    (FW + "zzz: 1\n",
     "mos.yaml:5: zzz: unknown key (known: mode, ports, forward, dpdk, workers, monitor, app, endhost)"),
    ("mode: inline\nmode: passive\n", "mos.yaml:2: mode: duplicate key (first on line 1)"),
    ("[a]: 1\n", "mos.yaml:1: top level: a key must be a plain word, got a list"),
    ("mode: both\n" + TWO_AF, "mos.yaml:1: mode: 'both' is not one of inline, passive, endhost"),
    ("mode:\n" + TWO_AF, "mos.yaml:1: mode: is empty"),
    # ports
    ("ports: []\n", "mos.yaml:1: ports: needs at least one port"),
    ("ports: {west: c1}\n", "mos.yaml:1: ports: expected a list, got a mapping"),
    ("ports:\n  - west\n", "mos.yaml:2: ports[0]: expected a mapping, got 'west'"),
    ("ports:\n  - {driver: afpacket, iface: c1}\n", "mos.yaml:2: ports[0]: name is required"),
    ("ports:\n  - {name: w, iface: c1}\n", "mos.yaml:2: ports[0]: driver is required"),
    ("ports:\n  - {name: w, driver: afpacket, ifcae: c1}\n",
     "mos.yaml:2: ports[0].ifcae: unknown key (did you mean 'iface'?)"),
    ("ports:\n  - {name: '', driver: afpacket, iface: c1}\n",
     "mos.yaml:2: ports[0].name: is empty"),
    ("ports:\n  - {name: we st, driver: afpacket, iface: c1}\n",
     "mos.yaml:2: ports[0].name: 'we st' may only contain letters, digits, '_' and '-'"),
    ("ports:\n  - {name: w, driver: afpacket}\n",
     "mos.yaml:2: ports[0]: driver afpacket needs iface"),
    ("ports:\n  - {name: w, driver: dpdk}\n", "mos.yaml:2: ports[0]: driver dpdk needs port_id"),
    ("ports:\n  - {name: w, driver: pcap}\n", "mos.yaml:2: ports[0]: driver pcap needs path"),
    ("ports:\n  - name: w\n    driver: dpdk\n    port_id: 0\n    iface: c1\n",
     "mos.yaml:5: ports[0].iface: only applies to driver afpacket, not dpdk"),
    ("ports:\n  - {name: w, driver: pcap, path: x.pcap, rx_ring_mb: 4}\n",
     "mos.yaml:2: ports[0].rx_ring_mb: only applies to driver afpacket, not pcap"),
    ("ports:\n  - {name: w, driver: dpdk, port_id: -1}\n",
     "mos.yaml:2: ports[0].port_id: -1 is out of range 0..65535"),
    ("ports:\n  - {name: w, driver: dpdk, port_id: '0'}\n",
     "mos.yaml:2: ports[0].port_id: '0' is not an integer"),
    ("ports:\n  - {name: w, driver: dpdk, port_id: [0]}\n",
     "mos.yaml:2: ports[0].port_id: a list is not an integer"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1, burst: 0}\n",
     "mos.yaml:2: ports[0].burst: 0 is out of range 1..1024"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1, rx_ring_mb: 4096}\n",
     "mos.yaml:2: ports[0].rx_ring_mb: 4096 is out of range 1..1024"),
    ("ports:\n  - {name: w, driver: afpacket, iface: a-very-long-interface}\n",
     "mos.yaml:2: ports[0].iface: 'a-very-long-interface' is not a Linux interface name"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1, options: [a]}\n",
     "mos.yaml:2: ports[0].options: expected a mapping, got a list"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1, options: {a: {b: 1}}}\n",
     "mos.yaml:2: ports[0].options.a: expected a plain value, got a mapping"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1, options: {a: 2001-13-45}}\n",
     "mos.yaml:2: ports[0].options.a: cannot read '2001-13-45': month must be in 1..12"),
    ("ports:\n  - {name: w, driver: afpacket, iface: c1}\n  - {name: w, driver: afpacket, iface: c2}\n",
     "mos.yaml:3: ports[1].name: 'w' is already used by ports[0]"),
    ("ports:\n  - {name: a, driver: afpacket, iface: c1}\n  - {name: b, driver: afpacket, iface: c1}\n",
     "mos.yaml:3: ports[1].iface: 'c1' is already used by ports[0]"),
    ("ports:\n  - {name: a, driver: dpdk, port_id: 0}\n  - {name: b, driver: dpdk, port_id: 0}\n",
     "mos.yaml:3: ports[1].port_id: 0 is already used by ports[0]"),
    # forward
    (TWO_AF, ("mos.yaml:1: forward: inline mode needs at least one pair of ports, "
             "e.g. forward: [[west, east]]")),
    (TWO_AF + "forward: []\n", ("mos.yaml:4: forward: inline mode needs at least one pair of "
                               "ports, e.g. forward: [[west, east]]")),
    (TWO_AF + "forward: [[west, eats]]\n",
     "mos.yaml:4: forward[0][1]: 'eats' is not a port name (did you mean 'east'?)"),
    (TWO_AF + "forward: [[west, zzz]]\n",
     "mos.yaml:4: forward[0][1]: 'zzz' is not a port name (ports: west, east)"),
    (TWO_AF + "forward: [[west, west]]\n",
     "mos.yaml:4: forward[0][1]: a port cannot forward to itself ('west')"),
    (TWO_AF + "forward: [[west, east, west]]\n",
     "mos.yaml:4: forward[0]: expected a pair [a, b] of port names, got 3 items"),
    (TWO_AF + "forward: [west, east]\n",
     "mos.yaml:4: forward[0]: expected a list, got 'west'"),
    (TWO_AF + "  - {name: x, driver: afpacket, iface: x1}\nforward:\n  - [west, east]\n  - [x, east]\n",
     "mos.yaml:7: forward[1][1]: port 'east' is already in forward[0]"),
    (TWO_AF + "  - {name: x, driver: afpacket, iface: x1}\nforward: [[west, east]]\n",
     ("mos.yaml:4: ports[2]: port 'x' is in no forward pair (in inline mode each port forwards "
     "to its peer; use mode: passive to only watch)")),
    ("mode: passive\n" + TWO_AF + "forward: [[west, east]]\n",
     "mos.yaml:5: forward: passive mode forwards nothing (remove forward or use mode: inline)"),
    # dpdk
    (("ports:\n  - {name: a, driver: afpacket, iface: c1}\n  - {name: b, driver: dpdk, port_id: 0}\n"
     "forward: [[a, b]]\n"),
     "mos.yaml:3: dpdk: required: ports[1] (b) uses driver dpdk; add dpdk: {eal_args: [...]}"),
    (FW + "dpdk: {eal_args: []}\n",
     "mos.yaml:5: dpdk: given but no port uses driver dpdk"),
    ("dpdk: {eal_args: --no-huge}\nports: [{name: a, driver: dpdk, port_id: 0}]\nmode: passive\n",
     "mos.yaml:1: dpdk.eal_args: expected a list, got '--no-huge'"),
    ("dpdk: {idle_sleep: 20000}\nports: [{name: a, driver: dpdk, port_id: 0}]\nmode: passive\n",
     "mos.yaml:1: dpdk.idle_sleep: 20000 is out of range 0..10000"),
    ("dpdk: {idle_sleep: soon}\nports: [{name: a, driver: dpdk, port_id: 0}]\nmode: passive\n",
     "mos.yaml:1: dpdk.idle_sleep: 'soon' is not an integer"),
    ("dpdk: {eal_args: [-m, {a: 1}]}\nports: [{name: a, driver: dpdk, port_id: 0}]\nmode: passive\n",
     "mos.yaml:1: dpdk.eal_args[1]: expected a string, got a mapping"),
    ("dpdk: {eal: []}\nports: [{name: a, driver: dpdk, port_id: 0}]\nmode: passive\n",
     "mos.yaml:1: dpdk.eal: unknown key (known: eal_args, idle_sleep)"),
    ("mode: passive\nports: [{name: a, driver: pcap, path: !!binary eA==}]\n",
     "mos.yaml:2: ports[0].path: 'eA==': tag !!binary is not supported here"),
    ("ports: [{name: a, driver: afpacket, iface: c1}]\n",
     ("mos.yaml:1: forward: inline mode needs a pair of ports, and there is only 'a' "
     "(use mode: passive to only watch)")),
    # workers
    (FW + "workers: 0\n", "mos.yaml:5: workers: 0 is out of range 1..64"),
    (FW + "workers: 65\n", "mos.yaml:5: workers: 65 is out of range 1..64"),
    (FW + "workers: two\n", "mos.yaml:5: workers: 'two' is not an integer"),
    (FW + "workers: true\n", "mos.yaml:5: workers: 'true' is not an integer"),
    # monitor: mos.Config's own messages at the line of the key
    (FW + "monitor:\n  overlap: newest\n",
     "mos.yaml:6: monitor.overlap: 'newest' is not one of first, last, bsd, linux, "
     "old-linux, solaris, windows, windows2k3, vista, macos, irix, hpux10, hpux11"),
    (FW + "monitor:\n  midstream: true\n  buffer_size: -1\n",
     "mos.yaml:7: monitor.buffer_size: -1 is out of range 0..1073741824"),
    (FW + "monitor: {tcp_timeout: 0}\n",
     "mos.yaml:5: monitor.tcp_timeout: 0 is not a number of seconds in (0, 31536000]"),
    (FW + "monitor: {midstream: maybe}\n",
     "mos.yaml:5: monitor.midstream: 'maybe' is not true or false"),
    (FW + "monitor:\n  buffer_sise: 1\n",
     "mos.yaml:6: monitor.buffer_sise: unknown key (did you mean 'buffer_size'?)"),
    (FW + "monitor: [overlap]\n",
     "mos.yaml:5: monitor: expected a mapping, got a list"),
    # app
    (FW + "app: 'not a module'\n",
     "mos.yaml:5: app: 'not a module' is neither a module name nor a .py file"),
])
def test_error_message(text, message):
    assert error(text) == message


@pytest.mark.parametrize("text, line, words", [
    ("ports: [\n", 2, "expected the node content, but found '<stream end>' (column 1)"),
    ("ports:\n  - {name: a\n  driver: b\n", 3, "expected ',' or '}'"),
    ("mode: inline\n\tports: []\n", 2, "found character '\\t' that cannot start any token"),
    ("a: 1\n---\nb: 2\n", 2, "but found another document (column 1)"),
    ("mode: inline\x00\n", 1, "character U+0000 is not allowed"),
    ("ports: *nope\n", 1, "found undefined alias 'nope' (column 8)"),
])
def test_yaml_syntax_error_names_the_line(text, line, words):
    """The wording after the line is PyYAML's; the prefix is ours."""
    msg = error(text)
    assert msg.startswith(f"mos.yaml:{line}: YAML syntax error: "), msg
    assert words in msg and "\n" not in msg


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file"):
        load_settings(tmp_path / "nope.yaml")


def test_load_not_utf8_names_the_line(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_bytes(b"mode: inline\nports: \xff\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(f)
    assert str(exc.value) == f"{f}:2: not UTF-8 text (byte 20)"


def test_load_error_uses_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mos.yaml").write_text("mode: inline\nports:\n  - {name: w, driver: dpdkk}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings("mos.yaml")
    assert str(exc.value) == \
        "mos.yaml:3: ports[0].driver: 'dpdkk' is not one of pcap, afpacket, dpdk"


# -- junk never escapes as anything but ConfigError ----------------------------------------

_TOKENS = ["ports", "mode", "forward", "dpdk", "eal_args", "workers", "monitor", "app",
           "name", "driver", "iface", "port_id", "path", "burst", "rx_ring_mb", "options",
           "pcap", "afpacket", "dpdk", "inline", "passive", "west", "east", "overlap",
           "buffer_size", "tcp_timeout", ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "\n",
           "  ", "    ", "&a ", "*a", "<<: ", "!!int ", "!!str ", "!!binary ", "!foo ", "'", '"',
           "#", "?", "|", ">", "---", "...", "0", "-1", "1e3", "0x10", "1:20", ".inf", ".nan",
           "null", "~", "yes", "no", "2001-13-45", "%YAML 1.1\n", "\t", "\\", "\x85", "\ufeff"]


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=4)), max_size=40))
def test_junk_raises_only_config_error(parts):
    try:
        s = parse_settings("".join(parts), name="j.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("j.yaml:")
    else:
        assert isinstance(s, msettings.Settings)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 70), st.floats(allow_nan=True),
                     st.sampled_from(["west", "east", "afpacket", "dpdk", "pcap", "c1", "inline",
                                      "passive", "first", "x.pcap", "", "a b"]))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) |
                       st.dictionaries(st.sampled_from(_TOKENS[:26]), c, max_size=4), max_leaves=12)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_TOKENS[:26]), _values, max_size=7))
def test_structured_junk_raises_only_config_error(doc):
    text = yaml.safe_dump(doc)
    try:
        parse_settings(text, name="j.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("j.yaml:")


ENDHOST = ("mode: endhost\nports:\n  - {name: wire, driver: afpacket, iface: bs1}\n"
           "endhost:\n  addresses: [{port: wire, address: 198.18.77.2/24}]\n")


def test_endhost_section_as_the_issue_writes_it():
    s = parse_settings(ENDHOST, name="serve.yaml")
    assert s.mode == "endhost" and s.forward == ()
    assert s.endhost.addresses == (("wire", "198.18.77.2/24"),)
    s = parse_settings(ENDHOST + "  gateway4: 198.18.77.1\n  tcp: {mss: 1400, nodelay: 1}\n")
    assert s.endhost.gateway4 == "198.18.77.1" and s.endhost.tcp == {"mss": 1400, "nodelay": 1}
    assert s.endhost.syncookies == 1                 # as Linux's tcp_syncookies default
    assert parse_settings(ENDHOST + "  syncookies: 0\n").endhost.syncookies == 0


@pytest.mark.parametrize("text,msg", [
    (ENDHOST.replace("198.18.77.2/24", "198.18.77.2"),
     "serve.yaml:5: endhost.addresses[0].address: '198.18.77.2' needs its prefix length"),
    (ENDHOST.replace("port: wire", "port: wan"),
     "serve.yaml:5: endhost.addresses[0].port: 'wan' is not a port (ports: wire)"),
    (ENDHOST.replace("198.18.77.2/24", "nope/24"),
     "serve.yaml:5: endhost.addresses[0].address: 'nope/24' is not an address"),
    (ENDHOST.split("endhost:")[0],
     "serve.yaml:1: endhost: mode endhost needs an endhost section"),
    (ENDHOST.replace("mode: endhost", "mode: passive"),
     "serve.yaml:4: endhost: passive mode with an end host needs a port for each: the end "
     "host has 'wire'"),
    (ENDHOST.replace("mode: endhost", "mode: inline").replace(
        "ports:\n", "ports:\n  - {name: b, driver: afpacket, iface: b1}\n") +
     "forward: [[b, wire]]\n",
     "serve.yaml:5: endhost: port 'wire' is the end host's; it cannot also forward "
     "(forward[0])"),
    (ENDHOST + "  serve: {port: 80}\n", "serve.yaml:6: endhost.serve: root is required"),
    (ENDHOST + "  gateway6: 198.18.0.1\n",
     "serve.yaml:6: endhost.gateway6: '198.18.0.1' is not an IPv6 address"),
    (ENDHOST + "  tcp: {mss: 10}\n", "serve.yaml:6: endhost.tcp.mss: 10 is out of range"),
    (ENDHOST + "  syncookies: 3\n", "serve.yaml:6: endhost.syncookies: 3 is out of range 0..2"),
    (ENDHOST + "  syncookies: yes\n", "serve.yaml:6: endhost.syncookies: "),
])
def test_endhost_section_errors_name_file_line_and_key(text, msg):
    with pytest.raises(ConfigError) as e:
        parse_settings(text, name="serve.yaml")
    assert str(e.value).startswith(msg), str(e.value)
