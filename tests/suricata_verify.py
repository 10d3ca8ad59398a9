"""A runner for suricata-verify test folders: reads ``test.yaml`` itself
(pcap, args, checks) and checks ``mos ids`` output the way upstream checks
Suricata's, so further cases can be dropped in.

A folder holds ``test.yaml`` (or several ``NAME.test.yaml``, each with its
``NAME.test.rules``), the rules (``test.rules``, or the only ``*.rules``),
and the capture (``pcap:`` in the YAML, relative to the folder, else the
only ``*.pcap``).  Checks:

- ``filter``: ``count`` records of eve.json match every ``match`` key
  (dotted paths into the record; ``has-key``/``not-has-key`` name a path);
  ``lt``/``gt``/``le``/``ge`` bound the count instead.
- ``shell``: ``args`` run in the output folder; stdout must equal ``expect``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Case:
    name: str
    folder: str
    pcap: str
    rules: list
    args: list
    checks: list
    requires: dict


def find_cases(root: str) -> list:
    out = []
    for folder in sorted(glob.glob(os.path.join(root, "*"))):
        if not os.path.isdir(folder):
            continue
        for y in sorted(glob.glob(os.path.join(folder, "*test.yaml"))):
            out.append(load_case(y))
    return out


def load_case(path: str) -> Case:
    folder = os.path.dirname(path)
    base = os.path.basename(path)
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    sub = base[:-len(".test.yaml")] if base != "test.yaml" else ""
    name = os.path.basename(folder) + (f"/{sub}" if sub else "")
    pcap = doc.get("pcap")
    if pcap:
        pcap = os.path.normpath(os.path.join(folder, pcap))
    else:
        pcaps = sorted(glob.glob(os.path.join(folder, "*.pcap")))
        pcap = pcaps[0] if pcaps else ""
    if sub and os.path.exists(os.path.join(folder, f"{sub}.test.rules")):
        rules = [os.path.join(folder, f"{sub}.test.rules")]
    elif os.path.exists(os.path.join(folder, "test.rules")):
        rules = [os.path.join(folder, "test.rules")]
    else:
        rules = sorted(glob.glob(os.path.join(folder, "*.rules")))
    args = []
    for a in doc.get("args") or []:
        args += shlex.split(str(a))
    return Case(name, folder, pcap, rules, args, list(doc.get("checks") or []),
                doc.get("requires") or {})


CLASSIFICATION = os.path.join(os.path.dirname(ROOT), "shared", "rulesets", "et-open-suricata-5.0",
                              "classification.config")


def run_case(case: Case, outdir: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mos", "ids", "-r", case.pcap, "-l", outdir, "--no-progress"]
    for r in case.rules:
        cmd += ["-S", r]
    if not case.rules:  # a test with no rules of its own (flow or protocol records only)
        empty = os.path.join(outdir, "empty.rules")
        os.makedirs(outdir, exist_ok=True)
        open(empty, "w").close()
        cmd += ["-S", empty]
    # suricata-verify runs with Suricata's classification.config; the one of
    # the ET ruleset in ../shared has the same standard classtypes
    own = os.path.join(case.folder, "classification.config")
    cls = own if os.path.exists(own) else CLASSIFICATION
    if os.path.exists(cls):
        cmd += ["--classification", cls]
    cid = _community_id(case.folder)
    if cid is not None:
        cmd += ["--set", f"mos.community-id={cid}"]
    cmd += case.args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _community_id(folder: str):
    """The Community ID seed the case's suricata.yaml asks eve-log for, or None."""
    path = os.path.join(folder, "suricata.yaml")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        doc = yaml.safe_load(text.split("\n", 1)[1] if text.startswith("%YAML") else text) or {}
    except yaml.YAMLError:
        return None
    for out in doc.get("outputs") or []:
        eve = (out or {}).get("eve-log") if isinstance(out, dict) else None
        if eve and eve.get("community-id"):
            return int(eve.get("community-id-seed", 0))
    return None


def read_eve(outdir: str) -> list:
    path = os.path.join(outdir, "eve.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


_MISSING = object()


def _get(rec, dotted: str):
    cur = rec
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def record_matches(rec: dict, match: dict) -> bool:
    for key, want in (match or {}).items():
        if key == "has-key":
            if _get(rec, want) is _MISSING:
                return False
            continue
        if key == "not-has-key":
            if _get(rec, want) is not _MISSING:
                return False
            continue
        got = _get(rec, key)
        if got is _MISSING:
            return False
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            if got != want:
                return False
        elif str(got) != str(want) if not isinstance(want, bool) else got != want:
            return False
    return True


def check(check: dict, records: list, outdir: str) -> tuple:
    """(ok, detail) of one check."""
    if "filter" in check:
        f = check["filter"]
        n = sum(1 for r in records if record_matches(r, f.get("match") or {}))
        for op, fn in (("count", lambda a, b: a == b), ("lt", lambda a, b: a < b),
                       ("gt", lambda a, b: a > b), ("le", lambda a, b: a <= b),
                       ("ge", lambda a, b: a >= b)):
            if op in f and not fn(n, f[op]):
                return False, f"{n} records match {f.get('match')} ({op} {f[op]} wanted)"
        return True, f"{n} records"
    if "shell" in check:
        sh = check["shell"]
        p = subprocess.run(sh["args"], shell=True, capture_output=True, text=True, cwd=outdir,
                           timeout=30)
        got = p.stdout.strip()
        want = str(sh.get("expect", "")).strip()
        return got == want, f"shell {sh['args']!r}: {got!r} (want {want!r})"
    return True, "check kind not known: skipped"
