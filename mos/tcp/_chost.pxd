# Declarations of host.h (the active endpoint) for Cython.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mos.tcp._ctcp cimport mos_tcp_ep_t, mos_tcp_seg_t, mos_tcp_opts_t
from mos.tcp._rbuf cimport mos_rbuf_pool_t

cdef extern from "host.h" nogil:
    enum:
        MOS_HOST_EV_READABLE, MOS_HOST_EV_WRITABLE, MOS_HOST_EV_CONNECTED
        MOS_HOST_EV_CLOSED, MOS_HOST_EV_OUTPUT
    ctypedef struct mos_tcp_host_cfg_t:
        uint16_t mss
        uint8_t wscale, sack, ts, nodelay, cubic
        uint32_t rcvbuf, rcvbuf_max, sndbuf
        uint64_t rto_init, rto_min, rto_max
        uint32_t syn_retries, retries
        uint64_t delack, time_wait
        uint32_t ts_base
    ctypedef struct mos_tcp_host_t:
        mos_tcp_ep_t me
        mos_tcp_ep_t peer
        mos_tcp_host_cfg_t cfg
        uint32_t snd_una, snd_wnd, snd_wl1, snd_wl2
        uint64_t sb_off, sb_len
        uint16_t smss
        uint8_t snd_shift, rcv_shift, ts_on, sack_on
        uint32_t cwnd, ssthresh, dupacks
        uint8_t in_recovery
        uint64_t srtt, rttvar, rto, min_rtt
        uint64_t rto_at, persist_at, delack_at, tw_at
        uint8_t err, eof
        uint64_t segs_out, segs_in, rexmits, fast_rexmits, timeouts, bytes_out, bytes_in
        uint64_t dup_in, ooo_in, paws_drops, probes
        uint64_t undos, wupd_resends, rcvbuf_grows, rcv_rtt
    ctypedef struct mos_tcp_host_out_t:
        uint32_t seq, ack
        uint16_t wnd
        uint8_t flags
        uint32_t len
        uint64_t data_off
        mos_tcp_opts_t opt

    void mos_tcp_host_cfg_default(mos_tcp_host_cfg_t *cfg)
    int mos_tcp_host_init(mos_tcp_host_t *h, const mos_tcp_host_cfg_t *cfg, mos_rbuf_pool_t *pool)
    void mos_tcp_host_free(mos_tcp_host_t *h)
    void mos_tcp_host_connect(mos_tcp_host_t *h, uint32_t iss, uint64_t now)
    int mos_tcp_host_accept(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, uint32_t iss, uint64_t now)
    int mos_tcp_host_input(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, const uint8_t *payload,
                           uint64_t now)
    int mos_tcp_host_output(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out)
    void mos_tcp_host_copy_tx(const mos_tcp_host_t *h, uint64_t off, uint8_t *dst, uint32_t n)
    int mos_tcp_host_timer(mos_tcp_host_t *h, uint64_t now)
    uint64_t mos_tcp_host_deadline(const mos_tcp_host_t *h)
    uint32_t mos_tcp_host_send(mos_tcp_host_t *h, const uint8_t *data, uint32_t n)
    uint32_t mos_tcp_host_recv(mos_tcp_host_t *h, uint8_t *out, uint32_t n)
    int mos_tcp_host_set_buffers(mos_tcp_host_t *h, uint32_t sndbuf, uint32_t rcvbuf)
    uint32_t mos_tcp_host_readable(const mos_tcp_host_t *h)
    uint32_t mos_tcp_host_writable(const mos_tcp_host_t *h)
    int mos_tcp_host_eof(const mos_tcp_host_t *h)
    void mos_tcp_host_shutdown(mos_tcp_host_t *h)
    void mos_tcp_host_abort(mos_tcp_host_t *h)
