# Declarations of the TCP module's C headers (options.h, endpoint.h) for
# Cython: `from mos.tcp._ctcp cimport *` (the engine's glue and mos.tcp._tcp).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from mos.tcp._rbuf cimport mos_rbuf_t

cdef extern from "options.h" nogil:
    enum:
        MOS_TH_FIN, MOS_TH_SYN, MOS_TH_RST, MOS_TH_PUSH, MOS_TH_ACK, MOS_TH_URG
        MOS_OPT_MSS, MOS_OPT_WSCALE, MOS_OPT_SACKOK, MOS_OPT_TS, MOS_OPT_SACK, MOS_OPT_BAD
        MOS_TCP_MAX_OPTLEN
    ctypedef struct mos_tcp_opts_t:
        uint8_t opts
        uint8_t wscale
        uint16_t mss
        uint32_t tsval, tsecr
        uint8_t nsack
        uint32_t sack[8]
    void mos_tcp_parse_options(const uint8_t *o, uint32_t n, mos_tcp_opts_t *t)
    int mos_tcp_write_options(const mos_tcp_opts_t *t, uint8_t *out, uint32_t cap)
    uint32_t mos_tcp_options_len(const mos_tcp_opts_t *t)

cdef extern from "endpoint.h" nogil:
    enum:
        MOS_TCPS_COUNT, MOS_TCP_NINPUTS
        MOS_EPF_ISN, MOS_EPF_SENT, MOS_EPF_ACKED, MOS_EPF_FIN, MOS_EPF_WSCALE, MOS_EPF_SACKOK
        MOS_EPF_TS, MOS_EPF_UNMON
        MOS_EPR_FIN, MOS_EPR_TSREC
        MOS_TCP_PASSIVE, MOS_TCP_HOST, MOS_TCP_MONITOR
        MOS_TCP_FOR_MONITOR, MOS_TCP_FOR_HOST
        MOS_TCP_RST_ACCEPT, MOS_TCP_RST_REJECT
        MOS_TCP_HINT_ACK, MOS_TCP_HINT_CHALLENGE
    ctypedef struct mos_tcp_cell_t:
        uint8_t next
        uint8_t who
    const mos_tcp_cell_t mos_tcp_table[11][15]
    const char *const mos_tcp_state_names[11]
    const char *const mos_tcp_input_names[15]

    ctypedef struct mos_tcp_ep_t:
        uint8_t state
        uint8_t flags
        uint8_t wscale
        uint8_t syn_seen
        uint16_t mss
        uint8_t role
        uint8_t rflags
        uint32_t isn
        uint32_t snd_nxt
        uint32_t ack
        uint32_t win
        uint32_t rwin_edge
        uint32_t fin_seq
        uint32_t tsval
        uint32_t ref_seq
        uint32_t ts_recent
        uint32_t fin_rcv
        uint64_t ref_off
        uint64_t data_end
        uint64_t pkts
        uint64_t bytes
        uint64_t consumed
        mos_rbuf_t rbuf

    ctypedef struct mos_tcp_seg_t:
        uint32_t seq, ack, len
        uint16_t wnd
        uint8_t flags
        const mos_tcp_opts_t *opt


    ctypedef struct mos_tcp_eff_t:
        uint8_t ntrans, rexmit, rst, fin, hint
        uint32_t trans
        uint32_t snd_nxt0, data_len, data_skip, oow_len, aft_len
        uint64_t rexmit_off, data_off, oow_off, aft_off

    void mos_tcp_ep_sent(mos_tcp_ep_t *S, const mos_tcp_ep_t *peer, const mos_tcp_seg_t *seg,
                         mos_tcp_eff_t *eff)
    void mos_tcp_ep_input(mos_tcp_ep_t *R, const mos_tcp_ep_t *peer, const mos_tcp_seg_t *seg,
                          uint64_t now, mos_tcp_eff_t *eff)
    int mos_tcp_ep_action(mos_tcp_ep_t *ep, int input, mos_tcp_eff_t *eff)
    int mos_tcp_ep_paws(const mos_tcp_ep_t *R, const mos_tcp_ep_t *peer, const mos_tcp_seg_t *seg)
    int mos_tcp_trans_from(uint32_t trans, int k)
    int mos_tcp_trans_to(uint32_t trans, int k)
