"""``mos httplog -r CAPTURE [-w FILE] [--format zeek|eve]``: one record per
HTTP transaction (registered through the ``mos.commands`` entry point)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("httplog", help="HTTP transactions of a capture as Zeek http.log or "
                                       "EVE http records")
    p.add_argument("-r", dest="capture", required=True, metavar="CAPTURE")
    p.add_argument("-w", dest="write", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--format", choices=("zeek", "eve"), default="zeek")
    p.add_argument("--midstream", action="store_true", help="also flows without a handshake")
    p.set_defaults(func=main_args)


def main_args(args) -> int:
    import mos
    from .httplog import main
    try:
        out = open(args.write, "w", encoding="utf-8") if args.write else sys.stdout
    except OSError as exc:
        print(f"mos: error: -w {args.write}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        log, _ = main(args.capture, out, args.format, mos.Config(midstream=args.midstream))
    except mos.CaptureError as exc:
        print(f"mos: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"mos httplog: {log.records} transactions; parser {log.http.stats()}",
          file=sys.stderr)
    return 0
