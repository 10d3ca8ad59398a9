/* fuzz_endpoint.c: the TCP endpoint module (mos/tcp/endpoint.h) and option
 * parsing/writing (options.h), built in any state and fed any segment.
 *
 * Two endpoints are built from the input as mos.tcp._tcp.Endpoint builds
 * them (state, role, known ISN / ACK / FIN, window, scale), then segments
 * go from one to the other as the monitor sends them through (sent on the
 * sender, input on the receiver), and user or inferred actions are applied.
 * Invariants:
 *   - the state is a valid one after every call;
 *   - each recorded transition is a cell of the table whose row applies to
 *     the endpoint's role, they chain (old state = previous new state),
 *     and the last one is the state the endpoint is in;
 *   - input: a RST is judged (accepted or rejected) and nothing else
 *     happens; a FIN is accepted only with ACK; accepted + skipped +
 *     out-of-window bytes fit the segment, accepted bytes lie at the offset
 *     the sender's numbering gives and inside a known receive window;
 *   - sent: pkts counts the segment, data_end never goes back, SND.NXT
 *     never goes back except on a SYN that sets a new ISN, a retransmission
 *     needs a known ISN;
 *   - an action outside the table's inputs is refused and changes nothing;
 *   - options: parsed values within their limits (scale <= 14, <= 4 SACK
 *     blocks); writing them back gives a 4-byte multiple <= 40 bytes that
 *     options_len predicted and that parses to the same values. */
#include "endpoint.h"
#include "fuzz_util.h"

static void build(fuzz_in_t *in, mos_tcp_ep_t *ep, int passive)
{
    memset(ep, 0, sizeof *ep);
    uint8_t a = fin_u8(in), b = fin_u8(in);
    ep->state = a % MOS_TCPS_COUNT;
    ep->role = (uint8_t)(((b & 1) ? MOS_TCP_HOST : MOS_TCP_MONITOR) | (passive ? MOS_TCP_PASSIVE : 0));
    if (b & 2) {
        uint32_t iss = fin_u32(in);
        ep->flags |= MOS_EPF_ISN;
        mos_tcp_ep_init_isn(ep, iss);
        if (b & 4) ep->snd_nxt = iss + 1 + fin_u16(in);
        ep->syn_seen = (b >> 3) & 1;
    }
    if (b & 16) {
        ep->flags |= MOS_EPF_ACKED;
        ep->ack = fin_u32(in);
        ep->win = fin_u16(in) << (fin_u8(in) % 15);
        ep->rwin_edge = ep->ack + ep->win;
    }
    if (b & 32) {
        ep->flags |= MOS_EPF_FIN;
        ep->fin_seq = ep->snd_nxt + (int8_t)fin_u8(in);
    }
    if (b & 64) {
        ep->flags |= MOS_EPF_WSCALE;
        ep->wscale = fin_u8(in) % 15;
    }
    ep->mss = (b & 128) ? fin_u16(in) : 0;
}

/* the transitions in eff lead from st0 to the endpoint's state through cells
 * of the table that apply to its role */
static void check_trans(const mos_tcp_ep_t *ep, int st0, const mos_tcp_eff_t *eff)
{
    FUZZ_CHECK(ep->state < MOS_TCPS_COUNT, "state %u", ep->state);
    FUZZ_CHECK(eff->ntrans <= MOS_TCP_MAX_TRANS, "ntrans %u", eff->ntrans);
    int cur = st0;
    for (int k = 0; k < eff->ntrans; k++) {
        int from = mos_tcp_trans_from(eff->trans, k), to = mos_tcp_trans_to(eff->trans, k);
        FUZZ_CHECK(from == cur, "transition %d from %d, state was %d", k, from, cur);
        FUZZ_CHECK(from != to, "transition %d to itself", k);
        int found = 0;
        for (int i = 0; i < MOS_TCP_NINPUTS; i++) {
            mos_tcp_cell_t c = mos_tcp_table[from][i];
            if (c.next == to + 1 && (c.who & ep->role)) found = 1;
        }
        FUZZ_CHECK(found, "transition %s -> %s is no cell for role %u", mos_tcp_state_names[from],
                   mos_tcp_state_names[to], ep->role);
        cur = to;
    }
    if (eff->ntrans < MOS_TCP_MAX_TRANS)
        FUZZ_CHECK(cur == ep->state, "transitions end in %d, state %d", cur, ep->state);
}

static void options_round_trip(fuzz_in_t *in, mos_tcp_opts_t *o)
{
    uint8_t raw[40];
    size_t n = fin_bytes(in, raw, fin_u8(in) % 41);
    uint8_t *heap = malloc(n ? n : 1); /* exact size: ASan sees a read past it */
    memcpy(heap, raw, n);
    memset(o, 0, sizeof *o);
    mos_tcp_parse_options(heap, (uint32_t)n, o);
    free(heap);
    FUZZ_CHECK(o->wscale <= MOS_TCP_MAX_WSCALE, "wscale %u", o->wscale);
    FUZZ_CHECK(o->nsack <= MOS_TCP_MAX_SACK, "nsack %u", o->nsack);
    FUZZ_CHECK(!o->nsack || (o->opts & MOS_OPT_SACK), "SACK blocks without the flag");
    uint32_t want = mos_tcp_options_len(o);
    FUZZ_CHECK(want <= MOS_TCP_MAX_OPTLEN && want % 4 == 0, "options_len %u", want);
    uint8_t *out = malloc(want ? want : 1);
    int w = mos_tcp_write_options(o, out, want);
    FUZZ_CHECK(w == (int)want, "wrote %d, options_len said %u", w, want);
    if (want) FUZZ_CHECK(mos_tcp_write_options(o, out, want - 1) == -1, "no refusal below cap");
    mos_tcp_opts_t back;
    memset(&back, 0, sizeof back);
    mos_tcp_parse_options(out, (uint32_t)w, &back);
    uint8_t keep = MOS_OPT_MSS | MOS_OPT_WSCALE | MOS_OPT_SACKOK | MOS_OPT_TS;
    FUZZ_CHECK((back.opts & keep) == (o->opts & keep), "options %x parse back as %x", o->opts,
               back.opts);
    FUZZ_CHECK(!(back.opts & MOS_OPT_BAD), "written options parse as malformed");
    if (o->opts & MOS_OPT_MSS) FUZZ_CHECK(back.mss == o->mss, "mss");
    if (o->opts & MOS_OPT_WSCALE) FUZZ_CHECK(back.wscale == o->wscale, "wscale");
    if (o->opts & MOS_OPT_TS) FUZZ_CHECK(back.tsval == o->tsval && back.tsecr == o->tsecr, "ts");
    FUZZ_CHECK(back.nsack <= o->nsack, "more SACK blocks written than parsed");
    for (int i = 0; i < 2 * back.nsack; i++) FUZZ_CHECK(back.sack[i] == o->sack[i], "sack %d", i);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    mos_tcp_ep_t ep[2];
    build(&in, &ep[0], 0);
    build(&in, &ep[1], 1);
    int steps = 0;
    while (!fin_empty(&in) && steps++ < 500) {
        uint8_t op = fin_u8(&in);
        int a = op & 1; /* the sender / the endpoint acted on */
        mos_tcp_ep_t *S = &ep[a], *R = &ep[!a];
        mos_tcp_eff_t eff;
        switch ((op >> 1) % 4) {
        case 0: case 1: { /* a segment from S to R */
            mos_tcp_opts_t o;
            uint8_t how = fin_u8(&in);
            memset(&o, 0, sizeof o);
            if (how & 1) options_round_trip(&in, &o);
            mos_tcp_seg_t seg = {.opt = &o};
            seg.flags = fin_u8(&in);
            seg.seq = (how & 2) ? fin_u32(&in) : S->snd_nxt + (int16_t)fin_u16(&in);
            seg.ack = (how & 4) ? fin_u32(&in) : R->snd_nxt + (int8_t)fin_u8(&in);
            seg.len = (how & 8) ? fin_u16(&in) : fin_u8(&in) % 64;
            seg.wnd = (how & 16) ? fin_u16(&in) : 65535;
            uint64_t pkts = S->pkts, data_end = S->data_end;
            uint32_t nxt0 = S->snd_nxt;
            int had_isn = S->flags & MOS_EPF_ISN, st0 = S->state;
            mos_tcp_ep_sent(S, R, &seg, &eff);
            check_trans(S, st0, &eff);
            FUZZ_CHECK(S->pkts == pkts + 1, "pkts");
            FUZZ_CHECK(S->data_end >= data_end, "data_end went back");
            FUZZ_CHECK(!eff.rexmit || had_isn, "rexmit without an ISN");
            if (had_isn && !(seg.flags & MOS_TH_SYN))
                FUZZ_CHECK(eff.snd_nxt0 == nxt0, "snd_nxt0 %u, was %u", eff.snd_nxt0, nxt0);
            if (had_isn && !(seg.flags & MOS_TH_SYN))
                FUZZ_CHECK(seq_geq(S->snd_nxt, nxt0), "SND.NXT %u went back from %u", S->snd_nxt,
                           nxt0);
            /* then the receiver */
            int known = mos_tcp_window_known(R, S);
            uint32_t edge = R->rwin_edge;
            st0 = R->state;
            mos_tcp_ep_input(R, S, &seg, (uint64_t)steps * 1000, &eff);
            check_trans(R, st0, &eff);
            if (seg.flags & MOS_TH_RST) {
                FUZZ_CHECK(eff.rst == MOS_TCP_RST_ACCEPT || eff.rst == MOS_TCP_RST_REJECT, "rst %u",
                           eff.rst);
                FUZZ_CHECK(!eff.data_len && !eff.oow_len && !eff.fin, "a RST carried data or FIN");
                FUZZ_CHECK(eff.rst == MOS_TCP_RST_ACCEPT || eff.ntrans == 0,
                           "a rejected RST changed state");
                if (eff.rst == MOS_TCP_RST_ACCEPT) {
                    st0 = S->state;
                    mos_tcp_ep_action(S, MOS_TCP_SENT_RST, &eff);
                    check_trans(S, st0, &eff);
                }
                break;
            }
            FUZZ_CHECK(eff.rst == MOS_TCP_RST_NONE, "rst without RST");
            FUZZ_CHECK(!eff.fin || ((seg.flags & MOS_TH_FIN) && (seg.flags & MOS_TH_ACK)),
                       "FIN accepted from flags %x", seg.flags);
            FUZZ_CHECK((uint64_t)eff.data_len + eff.data_skip + eff.oow_len <= seg.len,
                       "accepted %u + skipped %u + beyond %u > %u", eff.data_len, eff.data_skip,
                       eff.oow_len, seg.len);
            if (eff.data_len) {
                uint32_t dseq = seg.seq + ((seg.flags & MOS_TH_SYN) ? 1 : 0) + eff.data_skip;
                int64_t off = seq_to_off(dseq, S->ref_seq, S->ref_off);
                FUZZ_CHECK(off >= 0 && (uint64_t)off == eff.data_off, "data at %llu, numbered %lld",
                           (unsigned long long)eff.data_off, (long long)off);
                if (known)
                    FUZZ_CHECK(seq_leq(dseq + eff.data_len, edge), "accepted bytes past the window");
            }
            if (eff.oow_len) FUZZ_CHECK(known, "out of window with no known window");
            break;
        }
        case 2: { /* an action: user call or inferred */
            int input = (int8_t)fin_u8(&in);
            int st0 = S->state;
            int rc = mos_tcp_ep_action(S, input, &eff);
            if (input < 0 || input >= MOS_TCP_NINPUTS)
                FUZZ_CHECK(rc == -1 && S->state == st0, "bad input %d accepted", input);
            check_trans(S, st0, &eff);
            break;
        }
        default: { /* options alone; and RST acceptance is a pure function */
            mos_tcp_opts_t o;
            options_round_trip(&in, &o);
            mos_tcp_seg_t seg = {.seq = fin_u32(&in), .ack = fin_u32(&in), .flags = MOS_TH_RST,
                                 .opt = &o};
            int exact, r1 = mos_tcp_rst_acceptable(R, S, &seg, &exact);
            int exact2, r2 = mos_tcp_rst_acceptable(R, S, &seg, &exact2);
            FUZZ_CHECK(r1 == r2 && exact == exact2, "rst_acceptable is not a function");
            break;
        }
        }
    }
    fuzz_inject("endpoint", ep[0].state == MOS_TCPS_ESTABLISHED || ep[1].pkts > 0);
    return 0;
}
