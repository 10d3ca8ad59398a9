"""midstat: per-flow statistics, in the spirit of mOS's midstat sample.

    mos run capture.pcap --app middleboxes.midstat
"""

from middleboxes.midstat.app import FlowRecord, MidStat, attach, finish

__all__ = ["FlowRecord", "MidStat", "attach", "finish"]
