# cython: language_level=3
"""The TCP endpoint module (mos/tcp/endpoint.h, options.h) on its own.

For tests and docs, not the packet path: an Endpoint can be built in any
state with the variables a test needs, fed one segment or one action, and
its new state and the effects of that one call inspected (as smoltcp's
per-state tests do).  transition_table() lists the table the monitor and
the end host share.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset

from mos.tcp._ctcp cimport *

STATES = tuple(mos_tcp_state_names[i].decode() for i in range(MOS_TCPS_COUNT))
INPUTS = tuple(mos_tcp_input_names[i].decode() for i in range(MOS_TCP_NINPUTS))
assert len(STATES) == 11 and len(INPUTS) == 15, "update _tcp.pyx's table sizes"

_FLAG_BITS = {"F": MOS_TH_FIN, "S": MOS_TH_SYN, "R": MOS_TH_RST, "P": MOS_TH_PUSH,
              "A": MOS_TH_ACK, "U": MOS_TH_URG}


def _state_index(name):
    try:
        return STATES.index(name)
    except ValueError:
        raise ValueError(f"state {name!r} is not one of {', '.join(STATES)}") from None


def _input_index(name):
    try:
        return INPUTS.index(name)
    except ValueError:
        raise ValueError(f"input {name!r} is not one of {', '.join(INPUTS)}") from None


def transition_table():
    """The shared table as rows (state, input, new state, who), who being
    'both', 'monitor' or 'host'; cells where the input changes nothing are
    left out."""
    rows = []
    for s in range(MOS_TCPS_COUNT):
        for i in range(MOS_TCP_NINPUTS):
            c = mos_tcp_table[s][i]
            if not c.next:
                continue
            who = {MOS_TCP_FOR_MONITOR: "monitor", MOS_TCP_FOR_HOST: "host"}.get(c.who, "both")
            rows.append((STATES[s], INPUTS[i], STATES[c.next - 1], who))
    return rows


cdef void _opts_from(mos_tcp_opts_t *o, mss, wscale, sack_ok, ts, sack) except *:
    memset(o, 0, sizeof(mos_tcp_opts_t))
    if mss is not None:
        o.opts |= MOS_OPT_MSS
        o.mss = mss
    if wscale is not None:
        o.opts |= MOS_OPT_WSCALE
        o.wscale = wscale
    if sack_ok:
        o.opts |= MOS_OPT_SACKOK
    if ts is not None:
        o.opts |= MOS_OPT_TS
        o.tsval, o.tsecr = ts
    if sack:
        if len(sack) > 4:
            raise ValueError(f"at most 4 SACK blocks, not {len(sack)}")
        o.opts |= MOS_OPT_SACK
        o.nsack = len(sack)
        for k, (left, right) in enumerate(sack):
            o.sack[2 * k] = left
            o.sack[2 * k + 1] = right


cdef dict _opts_dict(const mos_tcp_opts_t *o):
    return {
        "mss": o.mss if o.opts & MOS_OPT_MSS else None,
        "wscale": o.wscale if o.opts & MOS_OPT_WSCALE else None,
        "sack_ok": bool(o.opts & MOS_OPT_SACKOK),
        "ts": (o.tsval, o.tsecr) if o.opts & MOS_OPT_TS else None,
        "sack": [(o.sack[2 * k], o.sack[2 * k + 1]) for k in range(o.nsack)]
                if o.opts & MOS_OPT_SACK else [],
        "bad": bool(o.opts & MOS_OPT_BAD),
    }


def parse_options(bytes data):
    """Parse TCP option bytes (the header past its 20 fixed bytes) into a
    dict: mss, wscale, sack_ok, ts (tsval, tsecr), sack [(left, right)], bad."""
    cdef mos_tcp_opts_t o
    memset(&o, 0, sizeof(o))
    mos_tcp_parse_options(<const uint8_t *>data, <uint32_t>len(data), &o)
    return _opts_dict(&o)


def write_options(mss=None, wscale=None, sack_ok=False, ts=None, sack=()):
    """TCP option bytes for these options, NOP-padded to a multiple of 4
    (RFC 9293 3.1); SACK blocks that do not fit in 40 bytes are left out."""
    cdef mos_tcp_opts_t o
    cdef uint8_t buf[64]
    _opts_from(&o, mss, wscale, sack_ok, ts, sack)
    cdef int n = mos_tcp_write_options(&o, buf, MOS_TCP_MAX_OPTLEN)
    if n < 0:
        raise ValueError("options do not fit in 40 bytes")
    return bytes(buf[:n])


class Segment:
    """One segment as the endpoint sees it.  flags: letters of 'SAFRPU'."""
    __slots__ = ("seq", "ack", "flags", "len", "wnd", "mss", "wscale", "sack_ok", "ts", "sack")

    def __init__(self, seq, ack=0, flags="A", len=0, wnd=65535, mss=None, wscale=None,
                 sack_ok=False, ts=None, sack=()):
        for ch in flags:
            if ch not in _FLAG_BITS:
                raise ValueError(f"flag {ch!r} in {flags!r} is not one of SAFRPU")
        self.seq, self.ack, self.flags, self.len, self.wnd = seq, ack, flags, len, wnd
        self.mss, self.wscale, self.sack_ok, self.ts, self.sack = mss, wscale, sack_ok, ts, sack

    def __repr__(self):
        return f"Segment(seq={self.seq}, ack={self.ack}, flags={self.flags!r}, len={self.len})"


class Effects:
    """What one call did (mos_tcp_eff_t): transitions [(old, new)] in order;
    rexmit (stream offset, length) or None; rst 'accept', 'reject' or None
    (RFC 5961 3.2); fin (a FIN accepted); ack_needed and challenge_ack
    (hints for an end host); snd_nxt0 (sent: SND.NXT before the segment);
    data (stream offset, length) accepted after window clipping, skip
    (leading bytes before the stream start), out_of_window (offset, length),
    after_fin (offset, length) of bytes sequenced after the accepted FIN;
    paws: the segment failed PAWS (RFC 7323 5.3) and nothing else was done."""
    __slots__ = ("transitions", "rexmit", "rst", "fin", "ack_needed", "challenge_ack",
                 "snd_nxt0", "data", "skip", "out_of_window", "after_fin", "paws")

    def __repr__(self):
        return "Effects(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


cdef object _effects(const mos_tcp_eff_t *e, uint32_t seglen, bint sent):
    r = Effects()
    r.transitions = [(STATES[mos_tcp_trans_from(e.trans, k)], STATES[mos_tcp_trans_to(e.trans, k)])
                     for k in range(e.ntrans)]
    r.rexmit = (e.rexmit_off, seglen) if e.rexmit else None
    r.rst = {MOS_TCP_RST_ACCEPT: "accept", MOS_TCP_RST_REJECT: "reject"}.get(e.rst)
    r.fin = bool(e.fin)
    r.ack_needed = bool(e.hint & MOS_TCP_HINT_ACK)
    r.challenge_ack = bool(e.hint & MOS_TCP_HINT_CHALLENGE)
    r.snd_nxt0 = e.snd_nxt0 if sent else None
    r.data = (e.data_off, e.data_len) if e.data_len else None
    r.skip = e.data_skip
    r.out_of_window = (e.oow_off, e.oow_len) if e.oow_len else None
    r.after_fin = (e.aft_off, e.aft_len) if (not sent and e.aft_len) else None
    r.paws = False
    return r


cdef class Endpoint:
    """One endpoint (mos_tcp_ep_t), built directly in any state.

    role: 'monitor' (the passive model) or 'host' (an end host: the table's
    host rows apply).  passive: the passive opener (the monitor's server).
    Variables left None are unknown to the model, as mid-stream: iss (with
    snd_nxt, default iss + 1), rcv_nxt and rcv_wnd (the last ACK it sent
    and its window), fin_seq (its FIN's sequence number).  syn_seen: its
    SYN was seen (the receive window is trusted only once both were).
    ts_ok: its SYN carried the Timestamps option (RFC 7323 3.2); ts_recent:
    the TS.Recent it holds (RFC 7323 4.3), None if none yet.
    """
    cdef mos_tcp_ep_t ep

    def __init__(self, state="CLOSED", *, role="monitor", passive=False, iss=None, snd_nxt=None,
                 rcv_nxt=None, rcv_wnd=65535, rwin_edge=None, fin_seq=None, syn_seen=True,
                 wscale=None, mss=0, ts_ok=False, ts_recent=None):
        if role not in ("monitor", "host"):
            raise ValueError(f"role {role!r} is not one of monitor, host")
        memset(&self.ep, 0, sizeof(self.ep))
        self.ep.state = _state_index(state)
        self.ep.role = (MOS_TCP_PASSIVE if passive else 0) | \
            (MOS_TCP_HOST if role == "host" else MOS_TCP_MONITOR)
        if iss is not None:
            self.ep.flags |= MOS_EPF_ISN
            self.ep.isn = iss
            self.ep.snd_nxt = iss + 1 if snd_nxt is None else snd_nxt
            self.ep.ref_seq = iss + 1
            self.ep.ref_off = 0
            self.ep.syn_seen = 1 if syn_seen else 0
        if rcv_nxt is not None:
            self.ep.flags |= MOS_EPF_ACKED
            self.ep.ack = rcv_nxt
            self.ep.win = rcv_wnd
            self.ep.rwin_edge = (rcv_nxt + rcv_wnd) & 0xffffffff if rwin_edge is None else rwin_edge
        if fin_seq is not None:
            self.ep.flags |= MOS_EPF_FIN
            self.ep.fin_seq = fin_seq
        if wscale is not None:
            self.ep.flags |= MOS_EPF_WSCALE
            self.ep.wscale = wscale
        self.ep.mss = mss
        if ts_ok:
            self.ep.flags |= MOS_EPF_TS
        if ts_recent is not None:
            self.ep.rflags |= MOS_EPR_TSREC
            self.ep.ts_recent = ts_recent

    @property
    def state(self):
        return STATES[self.ep.state]

    @property
    def iss(self):
        return self.ep.isn if self.ep.flags & MOS_EPF_ISN else None

    @property
    def snd_nxt(self):
        return self.ep.snd_nxt

    @property
    def rcv_nxt(self):
        return self.ep.ack if self.ep.flags & MOS_EPF_ACKED else None

    @property
    def rcv_wnd(self):
        return self.ep.win

    @property
    def rwin_edge(self):
        return self.ep.rwin_edge

    @property
    def fin_seq(self):
        return self.ep.fin_seq if self.ep.flags & MOS_EPF_FIN else None

    @property
    def mss(self):
        return self.ep.mss

    @property
    def wscale(self):
        return self.ep.wscale if self.ep.flags & MOS_EPF_WSCALE else None

    @property
    def sack_ok(self):
        return bool(self.ep.flags & MOS_EPF_SACKOK)

    @property
    def tsval(self):
        return self.ep.tsval

    @property
    def ts_recent(self):
        return self.ep.ts_recent if self.ep.rflags & MOS_EPR_TSREC else None

    @property
    def fin_rcv(self):
        """Sequence number of the peer's FIN it accepted, or None."""
        return self.ep.fin_rcv if self.ep.rflags & MOS_EPR_FIN else None

    @property
    def data_end(self):
        return self.ep.data_end

    @property
    def syn_seen(self):
        return bool(self.ep.syn_seen)

    @property
    def pkts(self):
        return self.ep.pkts

    def sent(self, seg, Endpoint peer):
        """This endpoint sent seg to peer (the monitor's sender model)."""
        cdef mos_tcp_seg_t s
        cdef mos_tcp_opts_t o
        cdef mos_tcp_eff_t e
        memset(&e, 0, sizeof(e))
        _seg_from(&s, &o, seg)
        mos_tcp_ep_sent(&self.ep, &peer.ep, &s, &e)
        return _effects(&e, s.len, True)

    def input(self, seg, Endpoint peer, uint64_t now=0):
        """This endpoint received seg from peer; peer.sent(seg, self) must
        have run first (the peer maps sequence numbers to stream offsets).
        PAWS (mos_tcp_ep_paws) runs first, as both roles do: a segment that
        fails it gives Effects with paws True and nothing else."""
        cdef mos_tcp_seg_t s
        cdef mos_tcp_opts_t o
        cdef mos_tcp_eff_t e
        memset(&e, 0, sizeof(e))
        _seg_from(&s, &o, seg)
        if mos_tcp_ep_paws(&self.ep, &peer.ep, &s):
            r = _effects(&e, s.len, False)
            r.paws = True
            return r
        mos_tcp_ep_input(&self.ep, &peer.ep, &s, now, &e)
        return _effects(&e, s.len, False)

    def paws(self, seg, Endpoint peer):
        """Only the PAWS check of RFC 7323 5.3 (R1; R3 records TS.Recent):
        True if this endpoint must not accept seg from peer."""
        cdef mos_tcp_seg_t s
        cdef mos_tcp_opts_t o
        _seg_from(&s, &o, seg)
        return bool(mos_tcp_ep_paws(&self.ep, &peer.ep, &s))

    def action(self, name):
        """Apply one table input directly (USER_CLOSE, SENT_RST, ...)."""
        cdef mos_tcp_eff_t e
        memset(&e, 0, sizeof(e))
        mos_tcp_ep_action(&self.ep, _input_index(name), &e)
        return _effects(&e, 0, False)

    def __repr__(self):
        return f"<Endpoint {self.state} iss={self.iss} snd_nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>"


cdef void _seg_from(mos_tcp_seg_t *s, mos_tcp_opts_t *o, seg) except *:
    _opts_from(o, seg.mss, seg.wscale, seg.sack_ok, seg.ts, seg.sack)
    s.seq = seg.seq & 0xffffffff
    s.ack = seg.ack & 0xffffffff
    s.len = seg.len
    s.wnd = seg.wnd
    s.flags = 0
    for ch in seg.flags:
        s.flags |= _FLAG_BITS[ch]
    s.opt = o


def table_markdown():
    """The table as a Markdown matrix, states down and inputs across; a cell
    is the new state, marked (m) for a monitor-only row, (h) for host-only.
    mos/tcp/README.md embeds this text (a test keeps the two equal)."""
    cells = {(s, i): (n, w) for s, i, n, w in transition_table()}
    short = {"both": "", "monitor": " (m)", "host": " (h)"}
    lines = ["| state | " + " | ".join(INPUTS) + " |",
             "|---" * (len(INPUTS) + 1) + "|"]
    for s in STATES:
        row = [cells[(s, i)][0] + short[cells[(s, i)][1]] if (s, i) in cells else ""
               for i in INPUTS]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
