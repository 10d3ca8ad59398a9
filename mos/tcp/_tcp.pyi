"""Types for mos.tcp._tcp (the TCP endpoint module, for tests and docs)."""

STATES: tuple[str, ...]
INPUTS: tuple[str, ...]

def transition_table() -> list[tuple[str, str, str, str]]: ...
def table_markdown() -> str: ...
def parse_options(data: bytes) -> dict: ...
def write_options(mss: int | None = ..., wscale: int | None = ..., sack_ok: bool = ...,
                  ts: tuple[int, int] | None = ...,
                  sack: list[tuple[int, int]] | tuple = ...) -> bytes: ...

class Segment:
    seq: int
    ack: int
    flags: str
    len: int
    wnd: int
    mss: int | None
    wscale: int | None
    sack_ok: bool
    ts: tuple[int, int] | None
    sack: list[tuple[int, int]] | tuple
    def __init__(self, seq: int, ack: int = ..., flags: str = ..., len: int = ...,
                 wnd: int = ..., mss: int | None = ..., wscale: int | None = ...,
                 sack_ok: bool = ..., ts: tuple[int, int] | None = ...,
                 sack: list[tuple[int, int]] | tuple = ...) -> None: ...

class Effects:
    transitions: list[tuple[str, str]]
    rexmit: tuple[int, int] | None
    rst: str | None
    fin: bool
    ack_needed: bool
    challenge_ack: bool
    snd_nxt0: int | None
    data: tuple[int, int] | None
    skip: int
    out_of_window: tuple[int, int] | None

class Endpoint:
    state: str
    iss: int | None
    snd_nxt: int
    rcv_nxt: int | None
    rcv_wnd: int
    rwin_edge: int
    fin_seq: int | None
    mss: int
    wscale: int | None
    sack_ok: bool
    tsval: int
    data_end: int
    syn_seen: bool
    pkts: int
    def __init__(self, state: str = ..., *, role: str = ..., passive: bool = ...,
                 iss: int | None = ..., snd_nxt: int | None = ..., rcv_nxt: int | None = ...,
                 rcv_wnd: int = ..., rwin_edge: int | None = ..., fin_seq: int | None = ...,
                 syn_seen: bool = ..., wscale: int | None = ..., mss: int = ...) -> None: ...
    def sent(self, seg: Segment, peer: Endpoint) -> Effects: ...
    def input(self, seg: Segment, peer: Endpoint, now: int = ...) -> Effects: ...
    def action(self, name: str) -> Effects: ...
