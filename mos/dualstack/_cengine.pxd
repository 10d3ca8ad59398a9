# Declarations of engine.h for Cython: `from mos.dualstack._cengine cimport *`.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mos._cnative cimport mos_frame_t, mos_pkt_t, mos_defrag_stats_t, mos_sha256_t
from mos.tcp._rbuf cimport mos_rbuf_t, mos_rbuf_pool_t
from mos.tcp._ctcp cimport *

cdef extern from "engine.h" nogil:
    enum:
        MOS_EV_PKT_IN, MOS_EV_CONN_START, MOS_EV_STATE_CHANGE, MOS_EV_NEW_DATA
        MOS_EV_REXMIT, MOS_EV_ERROR, MOS_EV_ORPHAN, MOS_EV_CONN_END, MOS_EV_TIMEOUT
        MOS_EV_STREAM_NOTE, MOS_EV_COUNT, MOS_MAX_CONSUMERS
        MOS_HK_SEND, MOS_HK_RECV, MOS_HK_NONE
        MOS_CLIENT, MOS_SERVER
        MOS_ERR_COUNT, MOS_END_COUNT, MOS_END_SHUTDOWN, MOS_END_RST
        MOS_FF_LIVE, MOS_FF_DYING, MOS_FF_MIDSTREAM, MOS_FF_UNMON, MOS_FF_EMBRYO, MOS_FF_NOBUF
        MOS_CSUM_IGNORE, MOS_CSUM_VERIFY, MOS_CSUM_AUTO, MOS_BURST_MAX
        MOS_EV_MAX, MOS_INTEREST_WORDS

    ctypedef struct mos_interest_t:
        uint64_t w[3]   # MOS_INTEREST_WORDS (engine.h asserts it is 3)
    uint32_t MOS_NIL
    uint32_t MOS_NOPKT

    ctypedef mos_tcp_ep_t mos_ep_t   # the TCP module's endpoint (mos/tcp/endpoint.h)

    ctypedef struct mos_digest_t:
        mos_sha256_t sha
        uint64_t hashed_to
        uint64_t hashed_bytes
        uint64_t lost
        uint32_t pending

    ctypedef struct mos_flow_t:
        uint32_t gen
        uint32_t hash
        uint16_t flags
        uint8_t ipver
        uint8_t end_reason
        uint8_t caddr[16]
        uint8_t saddr[16]
        uint16_t cport
        uint16_t sport
        uint32_t wire_pkts[2]
        uint64_t wire_bytes[2]
        uint16_t iface[2]
        uint64_t id
        mos_interest_t *interest
        uint64_t first_ts
        uint64_t last_ts
        mos_digest_t *digest
        mos_ep_t ep[2]

    ctypedef struct mos_event_t:
        uint8_t type
        uint8_t hook
        uint8_t side
        uint8_t reason
        uint32_t flow
        uint32_t pkt
        uint32_t aux
        uint64_t a
        uint64_t b

    ctypedef struct mos_config_t:
        uint32_t buffer_size[2]
        uint8_t overlap[2]
        uint8_t midstream
        uint8_t checksum
        uint8_t digest
        uint8_t keep_read
        uint32_t max_flows
        uint32_t max_embryonic
        uint64_t tcp_timeout_ns
        uint64_t defrag_mem
        uint64_t defrag_timeout_ns
        uint64_t reassembly_memcap

    ctypedef struct mos_counters_t:
        uint64_t frames, bytes, tcp, non_tcp, truncated, malformed, unsupported
        uint64_t bad_checksum, fragments, orphans, flows_created, flows_ended, flows_live
        uint64_t ended[7]
        uint64_t errors[13]
        uint64_t events, rexmit, payload_bytes, ooo_segments, snapped
        uint64_t rewritten, rewrite_failed, split, nomem, ip_len_over_wire
        uint64_t embryonic, evicted_embryonic, blocked

    ctypedef struct mos_engine_t:
        pass

    mos_engine_t *mos_engine_new(const mos_config_t *cfg)
    void mos_engine_free(mos_engine_t *e)
    void mos_engine_set_interest(mos_engine_t *e, const mos_interest_t *m)
    void mos_engine_set_reads(mos_engine_t *e, int mask)
    int mos_flow_reads(const mos_engine_t *e, const mos_flow_t *f, int side)
    int mos_flow_set_interest(mos_engine_t *e, mos_flow_t *f, const mos_interest_t *m)
    void mos_engine_set_checksum(mos_engine_t *e, int mode)
    void mos_engine_set_views(mos_engine_t *e, void *const *views, uint32_t n)
    void mos_engine_set_stable_frames(mos_engine_t *e, int on)
    void mos_flow_digest_wait(const mos_flow_t *f)
    int mos_engine_process(mos_engine_t *e, const mos_frame_t *frames, int start, int n,
                           uint64_t stop_ts)
    void mos_engine_advance(mos_engine_t *e, uint64_t now_ns)
    uint64_t mos_engine_next_deadline(const mos_engine_t *e)
    void mos_engine_end_all(mos_engine_t *e, int reason)
    uint32_t mos_engine_end_some(mos_engine_t *e, int reason, uint32_t max)
    void mos_engine_end_flow(mos_engine_t *e, uint32_t slot, int reason)
    const mos_event_t *mos_engine_events(const mos_engine_t *e, uint32_t *n)
    void mos_engine_clear_events(mos_engine_t *e)
    uint32_t mos_engine_reap(mos_engine_t *e)
    const uint32_t *mos_engine_dying(const mos_engine_t *e, uint32_t *n)
    mos_flow_t *mos_engine_flow(mos_engine_t *e, uint32_t slot, uint32_t gen)
    mos_flow_t *mos_engine_flow_any(mos_engine_t *e, uint32_t slot)
    const mos_pkt_t *mos_engine_pkt(const mos_engine_t *e, uint32_t i)
    uint8_t *mos_engine_verdicts(mos_engine_t *e)
    enum:
        MOS_VERDICT_FORWARD, MOS_VERDICT_DROP
    const mos_frame_t *mos_engine_frame(const mos_engine_t *e, uint32_t i)
    const mos_counters_t *mos_engine_counters(const mos_engine_t *e)
    const mos_defrag_stats_t *mos_engine_defrag_stats(const mos_engine_t *e)
    uint64_t mos_engine_now(const mos_engine_t *e)
    uint32_t mos_engine_slots(const mos_engine_t *e)
    uint64_t mos_engine_memory(const mos_engine_t *e)
    const mos_rbuf_pool_t *mos_engine_pool(const mos_engine_t *e)
    void mos_flow_set_buffer(mos_engine_t *e, mos_flow_t *f, int side, uint32_t size)
    void mos_flow_stop_side(mos_engine_t *e, mos_flow_t *f, int side)
    void mos_flow_block(mos_engine_t *e, mos_flow_t *f)
    void mos_flow_consumed(mos_engine_t *e, mos_flow_t *f, int side, uint64_t off)
    int mos_engine_edit(mos_engine_t *e, uint32_t i, uint32_t off, uint32_t dele,
                        const uint8_t *ins, uint32_t ins_len, char *err, size_t errlen)
    int mos_engine_tx_frames(mos_engine_t *e, uint32_t i, const uint8_t *data, uint32_t len,
                             const uint8_t **out, uint32_t *out_len, int max)
    void mos_engine_set_mtu(mos_engine_t *e, uint32_t ip_mtu)
    uint32_t mos_engine_mtu(const mos_engine_t *e)
    uint32_t mos_engine_edited_flows(const mos_engine_t *e)
    uint64_t mos_flow_acked(const mos_flow_t *f, int side)
    uint32_t mos_flow_wire_seq(const mos_flow_t *f, int side, uint32_t seq)


cdef extern from "seqmap.h" nogil:
    ctypedef struct mos_seqmap_t:
        uint32_t delta
        uint32_t n
    int MOS_SEQMAP_MAX
    void mos_seqmap_init(mos_seqmap_t *m)
    void mos_seqmap_clear(mos_seqmap_t *m)
    int mos_seqmap_add(mos_seqmap_t *m, uint32_t seq, uint32_t dele, const uint8_t *ins,
                       uint32_t ins_len, int after)
    void mos_seqmap_acked(mos_seqmap_t *m, uint32_t wire_ack)
    uint32_t mos_seqmap_out(const mos_seqmap_t *m, uint32_t seq)
    uint32_t mos_seqmap_in(const mos_seqmap_t *m, uint32_t ack)
    uint32_t mos_seqmap_rewrite(const mos_seqmap_t *m, uint32_t seq, const uint8_t *pay,
                                uint32_t len, uint8_t *out, uint32_t cap, uint32_t *out_seq)


cdef extern from "rewrite.h" nogil:
    uint32_t mos_rewrite_segment(const mos_seqmap_t *own, const mos_seqmap_t *peer,
                                 uint16_t linktype, const uint8_t *inp, uint32_t len,
                                 uint8_t *out, uint32_t cap)
    uint32_t mos_rewrite_bound(const mos_seqmap_t *own, uint32_t len)


cdef extern from "port.h" nogil:
    ctypedef int (*mos_rx_fn)(void *handle, mos_frame_t *frames, int max)
    ctypedef void (*mos_rx_done_fn)(void *handle)
    ctypedef int (*mos_tx_fn)(void *handle, const mos_frame_t *frames, int n)

    # compiled stream consumers (engine.h)
    ctypedef struct mos_cstream_t:
        mos_engine_t *e
        mos_flow_t *f
        uint32_t slot
        uint32_t pkt
        int side
        int id
        void **state

    ctypedef void (*mos_consumer_data_fn)(void *ctx, mos_cstream_t *cs, uint64_t off,
                                          const uint8_t *data, uint32_t len)
    ctypedef void (*mos_consumer_end_fn)(void *ctx, mos_cstream_t *cs)
    ctypedef void (*mos_consumer_packet_fn)(void *ctx, mos_cstream_t *cs, const uint8_t *payload,
                                            uint32_t len)

    ctypedef struct mos_consumer_t:
        mos_consumer_data_fn data
        mos_consumer_end_fn end
        void *ctx
        uint8_t sides
        uint32_t lookback
        mos_consumer_packet_fn packet

    int mos_engine_add_consumer(mos_engine_t *e, const mos_consumer_t *c)
    void mos_engine_remove_consumer(mos_engine_t *e, int id)
    void mos_cstream_note(mos_cstream_t *cs, uint32_t code, uint64_t a, uint64_t b)
    int64_t mos_flow_consumed_to(const mos_flow_t *f, int side)
    void **mos_cstream_peer_state(mos_cstream_t *cs)
    void *mos_flow_consumer_state(const mos_flow_t *f, int id, int side)
