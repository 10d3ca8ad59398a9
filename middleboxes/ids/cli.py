"""``mos ids``: the IDS on captures, shaped like Suricata's command line.

    mos ids -r CAPTURE [-r ...] -S RULES [-S ...] -l OUTDIR [-k none|all] [--set KEY=VALUE ...]

Writes ``eve.json`` (alerts, then one stats record) and ``fast.log`` in
OUTDIR and prints a summary (packets, alerts per sid, rules loaded and
refused, Gbit/s) on stderr.  ``-r`` takes capture files or directories (every
``*.pcap``/``*.pcapng`` in them, in name order); each capture runs in a
fresh engine, as Suricata reads them one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

import mos
from mos.tcp import overlap as overlap_names

from .eve import Eve, open_output_dir
from .rules import RuleSet, load_classification, load_rules
from .hostos import HostPolicies, split_prefixes
from .netsets import Vars

#: --set keys and what they set: (target, converter)
_BOOL = {"true": True, "yes": True, "1": True, "on": True,
         "false": False, "no": False, "0": False, "off": False}


def _bool(key, v):
    try:
        return _BOOL[v.lower()]
    except KeyError:
        raise ValueError(f"--set {key}={v}: not a boolean (true/false)") from None


def _size(key, v):
    t = v.strip().lower()
    mult = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "k": 1 << 10, "m": 1 << 20,
            "g": 1 << 30}
    for suf in ("kb", "mb", "gb", "k", "m", "g"):
        if t.endswith(suf):
            try:
                return int(t[:-len(suf)]) * mult[suf]
            except ValueError:
                break
    try:
        n = int(t)
    except ValueError:
        raise ValueError(f"--set {key}={v}: not a byte count (e.g. 1048576, 64kb, 1mb)") from None
    if n < 0:
        raise ValueError(f"--set {key}={v}: negative")
    return n


def _overlap(key, v):
    if v not in overlap_names.NAMES:
        raise ValueError(f"--set {key}={v}: not one of {', '.join(overlap_names.NAMES)}")
    return v


def _community_id(key, v):
    """Community ID in EVE records: a seed (0-65535), or false for none."""
    if v.lower() in ("false", "no", "off"):
        return None
    if v.lower() in ("true", "yes", "on"):
        return 0
    try:
        seed = int(v, 0)
    except ValueError:
        seed = -1
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"--set {key}={v}: expected a seed 0..65535, true or false")
    return seed


def _inline(key, v):
    if v.lower() == "auto":
        return "auto"
    return _bool(key, v)


SET_KEYS = {
    "stream.inline": ("stream_inline", _inline),
    "stream.midstream": ("midstream", _bool),
    "stream.async-oneside": ("async_oneside", _bool),
    "stream.reassembly.depth": ("depth", _size),
    "stream.reassembly.memcap": ("memcap", _size),
    "mos.overlap": ("overlap", _overlap),
    "mos.buffer-size": ("buffer_size", _size),
    "mos.lookback": ("lookback", _size),
    "mos.community-id": ("community_id", _community_id),
}


#: --set values that are engine options (mos.Config field names)
_CONFIG_OF_SET = {"memcap": "reassembly_memcap", "overlap": "overlap",
                  "buffer_size": "buffer_size", "midstream": "midstream"}


def config_changes(sets: dict) -> dict:
    """The mos.Config fields the --set values give."""
    return {field: sets[name] for name, field in _CONFIG_OF_SET.items() if name in sets}


def stats_record(ids, packets: int, gaps: int, **extra) -> dict:
    """The EVE stats record a run ends with."""
    st = ids.stats()
    return {"timestamp": _now(), "event_type": "stats",
            "stats": {**extra, "capture": {"kernel_packets": packets},
                      "tcp": {"reassembly_gap": gaps},
                      "detect": {"alert": st["alerts"], "engines": [
                          {"rules_loaded": len(ids.ruleset.rules),
                           "rules_failed": len(ids.ruleset.refused)}]},
                      "mos": st}}


def parse_sets(items) -> dict:
    """--set values by target name; host-os-policy.NAME=PREFIX,... entries
    gather under "host_os" as a mapping NAME -> [prefixes]."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError(f"--set {it}: expected KEY=VALUE")
        key, v = (x.strip() for x in it.split("=", 1))
        if key.startswith("host-os-policy."):
            name = key.split(".", 1)[1]
            table = {name: v}
            HostPolicies.from_mapping(table, "--set host-os-policy")   # names the bad value
            out.setdefault("host_os", {}).setdefault(name, []).extend(split_prefixes(v))
            continue
        if key not in SET_KEYS:
            if not key.startswith(("mos.", "stream.")):
                # a Suricata setting mos has no use for (app-layer., outputs., ...):
                # said once, not an error, so Suricata command lines run unchanged
                print(f"mos: note: --set {key}: not used by mos, ignored", file=sys.stderr)
                continue
            import difflib
            close = difflib.get_close_matches(key, SET_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"--set {key}: unknown key{hint}; known: {', '.join(SET_KEYS)}")
        name, conv = SET_KEYS[key]
        out[name] = conv(key, v)
        if name == "async_oneside":
            print("mos: note: --set stream.async-oneside: mos follows a flow seen in one "
                  "direction only in any case", file=sys.stderr)
    return out


def captures(paths) -> list:
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.endswith((".pcap", ".pcapng", ".cap")))
            if not found:
                raise ValueError(f"-r {p}: no .pcap or .pcapng file in this directory")
            out += found
        elif os.path.exists(p):
            out.append(p)
        else:
            raise ValueError(f"-r {p}: no such file or directory")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("ids", help="signature IDS (Suricata rules) over captures: eve.json, fast.log")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-r", dest="read", action="append", metavar="CAPTURE",
                     help="capture file or directory (repeatable)")
    src.add_argument("-c", dest="config", metavar="CONFIG",
                     help="YAML settings with live ports (mos run -c): in-line, drop blocks "
                          "the packet and the rest of its flow, reject resets both ends; runs "
                          "until SIGINT/SIGTERM")
    p.add_argument("-S", dest="rules", action="append", metavar="RULES", required=True,
                   help="rule file (repeatable); rules outside the subset are reported and skipped")
    p.add_argument("-l", dest="logdir", metavar="OUTDIR", default=".",
                   help="log directory for eve.json and fast.log (default: .)")
    p.add_argument("-k", dest="checksum", choices=("none", "all"), default=None,
                   help="checksum checks: all (verify) or none (ignore); default: auto")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="a setting: " + ", ".join(SET_KEYS)
                        + ", host-os-policy.OS=PREFIX,... (overlap policy of receiving hosts)")
    p.add_argument("--eve", metavar="TARGET",
                   help="where EVE records go: a file (default: OUTDIR/eve.json) or "
                        "unix_stream:/path, a Unix socket a collector (Filebeat, Logstash, "
                        "Vector) listens on, as Suricata's filetype unix_stream")
    p.add_argument("--vars", metavar="YAML",
                   help="address and port groups (Suricata's vars: layout) and, if the file "
                        "has one, its host-os-policy table (overlap policy per receiving host)")
    p.add_argument("--classification", metavar="FILE", help="classification.config")
    p.add_argument("--no-payload", action="store_true", help="no payload in EVE alerts")
    p.add_argument("--no-http-log", action="store_true",
                   help="no EVE http records (Suricata writes them by default; they need "
                        "the HTTP parser on every flow)")
    p.add_argument("--no-tls-log", action="store_true",
                   help="no EVE tls records (one per TLS flow: certificate, SNI, version, "
                        "JA3/JA3S/JA4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main_args)


def main_args(args) -> int:
    try:
        sets = parse_sets(args.sets)
        caps = captures(args.read) if args.read else []
    except ValueError as exc:
        print(f"mos: error: {exc}", file=sys.stderr)
        return 2
    try:
        outdir = open_output_dir(args.logdir)
    except OSError as exc:
        print(f"mos: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    vars_ = Vars.defaults()
    host_os = sets.pop("host_os", {})
    if args.vars:
        try:
            import yaml
            with open(args.vars, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
            vars_ = Vars.from_mapping(doc, args.vars)
            table = (doc.get("host-os-policy") if isinstance(doc, dict) else None) or {}
            HostPolicies.from_mapping(table, f"{args.vars}: host-os-policy")  # checks it
            host_os = {**table, **host_os}  # --set host-os-policy.NAME wins
        except (OSError, ValueError, yaml.YAMLError) as exc:
            print(f"mos: error: --vars {args.vars}: {exc}", file=sys.stderr)
            return 2
    sets["host_os"] = HostPolicies.from_mapping(host_os) if host_os else None
    classes = None
    if args.classification:
        try:
            classes = load_classification(args.classification)
        except (OSError, ValueError) as exc:
            print(f"mos: error: --classification: {exc}", file=sys.stderr)
            return 2
    rs = load_rules(args.rules, vars_, classes)
    for ref in rs.refused:
        print(f"mos: rule refused: {ref}", file=sys.stderr)
    if not rs.rules:
        print("mos: note: no rule loaded: only flow and stats records", file=sys.stderr)
    eve = args.eve or os.path.join(outdir, "eve.json")
    sets["http_log"] = not args.no_http_log
    sets["tls_log"] = not args.no_tls_log
    if args.config:
        return run_live(rs, args.config, outdir, sets, classes=classes,
                        payload=not args.no_payload, status=not args.no_progress, eve=eve)
    return run(rs, caps, outdir, sets, checksum=args.checksum, classes=classes,
               payload=not args.no_payload, progress=not args.no_progress, eve=eve)


class LiveApp:
    """The IDS as one worker's app in `mos ids -c`: its own engine, rules
    and prefilter; every worker appends to the same eve.json and fast.log."""

    def __init__(self, rs, outdir, sets, classes, payload, inline, eve):
        self.args = (rs, outdir, sets, classes, payload, inline, eve)
        self.ids = None

    def attach(self, engine) -> None:
        from .ids import DEFAULT_LOOKBACK, Ids
        rs, outdir, sets, classes, payload, inline, eve = self.args
        self.eve = Eve(eve, append=True)
        self.fast = open(os.path.join(outdir, "fast.log"), "a", encoding="utf-8", buffering=1)
        self.ids = Ids(rs, eve=self.eve, fast=self.fast, classes=classes, payload=payload,
                       lookback=sets.get("lookback", DEFAULT_LOOKBACK),
                       depth=sets.get("depth", 0), inline=inline,
                       stream_inline=stream_inline(sets, inline),
                       host_os=sets.get("host_os"), http_log=sets.get("http_log", True),
                       tls_log=sets.get("tls_log", True),
                       community_id=sets.get("community_id"))
        self.ids.attach(engine)

    def finish(self, engine, stats) -> None:
        st = self.ids.stats()
        c = engine.counters()
        self.eve.write(stats_record(self.ids, c["frames"], c["errors"]["gap"]))
        self.eve.close()
        self.fast.close()
        _eve_note(self.eve)
        print(f"mos ids: {st['alerts']} alerts, {c['blocked']} packets blocked; "
              + ", ".join(f"sid {k}: {v}" for k, v in st["alerts_by_sid"].items()),
              file=sys.stderr)


def stream_inline(sets: dict, inline: bool) -> bool:
    """stream.inline: auto (the default) is on for in-line ports only, as in
    Suricata: an IDS reading a capture or a tap reports a stream match once
    the receiver acknowledged it."""
    v = sets.get("stream_inline", "auto")
    return inline if v == "auto" else v


def _eve_note(eve) -> None:
    dropped = getattr(eve.out, "dropped", 0)
    if dropped:
        print(f"mos: note: {dropped} EVE records not delivered: nobody was reading "
              f"{eve.out.path}", file=sys.stderr)


def run_live(rs: RuleSet, config: str, outdir: str, sets: dict, *, classes=None,
             payload=True, status=True, eve=None) -> int:
    import dataclasses
    from mos.runtime.workers import run_settings
    from mos.settings import load_settings
    settings = load_settings(config)
    repl = config_changes(sets)
    if repl:
        settings = dataclasses.replace(settings, monitor=settings.monitor.replace(**repl))
    eve = eve or os.path.join(outdir, "eve.json")
    for name in (eve, os.path.join(outdir, "fast.log")):   # a new run starts new files
        if not name.startswith("unix_stream:"):
            open(name, "w").close()
    inline = settings.mode == "inline"
    return run_settings(settings, app_spec=lambda: LiveApp(rs, outdir, sets, classes, payload,
                                                           inline, eve),
                        status=status, engine_type=mos.Engine)


def run(rs: RuleSet, caps: list, outdir: str, sets: dict, *, checksum=None, classes=None,
        payload=True, progress=True, out=sys.stderr, eve=None) -> int:
    from .ids import DEFAULT_LOOKBACK, Ids
    from mos.cli import _notes
    try:
        eve = Eve(eve or os.path.join(outdir, "eve.json"))
    except OSError as exc:
        print(f"mos: error: --eve {eve}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    fast = open(os.path.join(outdir, "fast.log"), "w", encoding="utf-8")
    # Suricata's default host OS policy is bsd (--set mos.overlap=first: Zeek's)
    cfg = {"checksum": {"none": "ignore", "all": "verify", None: "auto"}[checksum],
           "overlap": "bsd", **config_changes(sets)}
    ids = Ids(rs, eve=eve, fast=fast, classes=classes, payload=payload,
              lookback=sets.get("lookback", DEFAULT_LOOKBACK), depth=sets.get("depth", 0),
              stream_inline=stream_inline(sets, False), host_os=sets.get("host_os"),
              http_log=sets.get("http_log", True), tls_log=sets.get("tls_log", True),
              community_id=sets.get("community_id"))
    packets = payload_bytes = gaps = 0
    t0 = time.perf_counter()
    rc = 0
    try:
        for cap in caps:
            eng = mos.Engine(mos.Config(**cfg))
            ids.attach(eng)
            try:
                eng.run(cap, progress=_bar(cap) if progress and sys.stderr.isatty() else None)
            except mos.CaptureError as exc:
                print(f"mos: error: {exc}", file=sys.stderr)
                rc = 2
                continue
            c = eng.counters()
            packets += c["frames"]
            payload_bytes += c["payload_bytes"]
            gaps += c["errors"]["gap"]
            _notes(c, cap, eng.config)
    finally:
        secs = time.perf_counter() - t0
        st = ids.stats()
        eve.write(stats_record(ids, packets, gaps, uptime=round(secs, 3)))
        eve.close()
        fast.close()
        _eve_note(eve)
    gbps = payload_bytes * 8 / secs / 1e9 if secs > 0 else 0.0
    print(f"mos ids: {packets} packets, {st['alerts']} alerts; rules {len(rs.rules)} loaded, "
          f"{len(rs.refused)} refused; {secs:.2f} s, {gbps:.2f} Gbit/s of payload", file=out)
    for sid, n in st["alerts_by_sid"].items():
        print(f"  sid {sid}: {n}", file=out)
    return rc


def _now() -> str:
    from .eve import eve_time
    return eve_time(time.time())


def _bar(cap):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                   transient=True)
    task = bar.add_task(os.path.basename(cap), total=os.path.getsize(cap))
    bar.start()

    def cb(off, size):
        bar.update(task, completed=off)
        if off >= size:
            bar.stop()
    return cb


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="mos")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    args = p.parse_args(["ids"] + list(argv or sys.argv[1:]))
    return args.func(args)
