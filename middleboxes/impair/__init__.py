"""impair: loss, duplication and reordering of TCP segments on an in-line
run, a netem built on mos itself (DESIGN §5).

    MOS_IMPAIR="loss=0.02,seed=7" mos run -c inline.yaml --app middleboxes.impair.app
"""

from middleboxes.impair.app import DEFAULTS, Impair, attach, finish, parse_params

__all__ = ["DEFAULTS", "Impair", "attach", "finish", "parse_params"]
