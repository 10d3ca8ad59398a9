"""Text for midstat: the end-of-run flow table (plain or rich) and status lines.

Pure formatting: takes FlowRecord-like rows, returns or writes text.
"""

from __future__ import annotations

from typing import Sequence, TextIO

from mos import Side

__all__ = ["COLUMNS", "STATUS_COLUMNS", "row_cells", "render_table", "render_status",
           "format_totals"]

#: (header, right-aligned)
COLUMNS = (
    ("id", True), ("client", False), ("server", False),
    ("client state", False), ("server state", False),
    ("pkts c>s", True), ("pkts s>c", True), ("bytes c>s", True), ("bytes s>c", True),
    ("duration", True), ("end", False),
)


def _state(st) -> str:
    return st.name if st is not None else "-"


def row_cells(r) -> list[str]:
    """The table cells of one FlowRecord, as strings, in COLUMNS order."""
    return [
        str(r.id), r.client, r.server, _state(r.client_state), _state(r.server_state),
        str(r.packets[Side.CLIENT]), str(r.packets[Side.SERVER]),
        str(r.bytes[Side.CLIENT]), str(r.bytes[Side.SERVER]),
        f"{r.duration:.6f}", r.end_reason.name if r.end_reason is not None else "LIVE",
    ]


def format_totals(totals: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals["end_reasons"].items()))
    pk, by = totals["packets"], totals["bytes"]
    return (
        f"totals: {totals['flows']} flows" + (f" ({reasons})" if reasons else "")
        + f"; client->server {pk[0]} packets {by[0]} bytes"
        + f"; server->client {pk[1]} packets {by[1]} bytes"
    )


#: columns of a status line's top flows (by index into COLUMNS)
STATUS_COLUMNS = (0, 1, 2, 3, 4, 7, 8)


def _aligned(columns, rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (h, _) in enumerate(columns)]
    lines = []
    for cells in [[h for h, _ in columns], *rows]:
        parts = [c.rjust(w) if right else c.ljust(w)
                 for c, w, (_, right) in zip(cells, widths, columns)]
        lines.append("  ".join(parts).rstrip())
    return lines


def render_table(rows, totals: dict, out: TextIO, rich: bool = False) -> None:
    """Write the flow table and the totals line to ``out``."""
    cells = [row_cells(r) for r in rows]
    if not rich:
        out.write("\n".join(_aligned(COLUMNS, cells) + [format_totals(totals)]) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    # Two lines per flow (client above server) keep the table within a
    # terminal's width; the plain table keeps one line per flow for tools.
    table = Table(title="midstat: flows", caption=format_totals(totals), show_lines=True)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("client\nserver", overflow="fold", min_width=15)
    table.add_column("state", no_wrap=True)
    table.add_column("packets\nsent", justify="right", no_wrap=True)
    table.add_column("bytes\nsent", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("end", no_wrap=True)
    for c in cells:
        table.add_row(c[0], f"{c[1]}\n{c[2]}", f"{c[3]}\n{c[4]}", f"{c[5]}\n{c[6]}",
                      f"{c[7]}\n{c[8]}", c[9], c[10])
    Console(file=out).print(table)


def render_status(since: float, live: int, top) -> str:
    """One status block: time since the first flow, live flows, the top flows by bytes."""
    lines = [f"midstat +{since:.3f}s: {live} live flow{'s' if live != 1 else ''}"]
    if top:
        columns = [COLUMNS[i] for i in STATUS_COLUMNS]
        rows = [[row_cells(r)[i] for i in STATUS_COLUMNS] for r in top]
        lines += ["  " + line for line in _aligned(columns, rows)]
    return "\n".join(lines) + "\n"
