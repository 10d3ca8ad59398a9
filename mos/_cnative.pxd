# Declarations of the native layer (native/*.h) for Cython code:
#     from mos._cnative cimport *
# Keep in step with the headers; every struct field and function is here.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


cdef extern from "capture.h" nogil:
    enum:
        MOS_LT_NULL
        MOS_LT_ETHERNET
        MOS_LT_RAW
        MOS_LT_LOOP
        MOS_LT_SLL
        MOS_LT_IPV4
        MOS_LT_IPV6
        MOS_LT_SLL2

    ctypedef struct mos_frame_t:
        const uint8_t *data
        uint32_t caplen
        uint32_t wirelen
        uint64_t ts_ns
        uint16_t linktype
        uint16_t iface
        uint32_t _pad

    ctypedef struct mos_capture_stats_t:
        uint64_t frames
        uint64_t snapped
        uint64_t blocks_skipped

    ctypedef struct mos_capture_t:
        pass

    mos_capture_t *mos_capture_open(const char *path, char *err, size_t errlen)
    int mos_capture_next(mos_capture_t *c, mos_frame_t *frames, int max, char *err, size_t errlen)
    uint64_t mos_capture_offset(const mos_capture_t *c)
    uint64_t mos_capture_size(const mos_capture_t *c)
    int mos_capture_linktype(const mos_capture_t *c)
    const mos_capture_stats_t *mos_capture_stats(const mos_capture_t *c)
    void mos_capture_close(mos_capture_t *c)
    mos_capture_t *mos_capture_open_mem(const uint8_t *buf, size_t len, const char *name,
                                        char *err, size_t errlen)


cdef extern from "decode.h" nogil:
    cdef enum mos_decode_result:
        MOS_DEC_TCP
        MOS_DEC_OTHER
        MOS_DEC_FRAGMENT
        MOS_DEC_TRUNCATED
        MOS_DEC_MALFORMED
        MOS_DEC_UNSUPPORTED

    enum:
        MOS_TH_FIN
        MOS_TH_SYN
        MOS_TH_RST
        MOS_TH_PUSH
        MOS_TH_ACK
        MOS_TH_URG
        MOS_TH_ECE
        MOS_TH_CWR

    enum:
        MOS_OPT_MSS
        MOS_OPT_WSCALE
        MOS_OPT_SACKOK
        MOS_OPT_TS
        MOS_OPT_SACK
        MOS_OPT_BAD

    ctypedef struct mos_pkt_t:
        # layer 2
        const uint8_t *l2
        uint16_t l2len
        uint16_t ethertype
        uint8_t vlan_depth
        uint8_t mpls_depth
        # layer 3
        uint8_t ipver
        uint8_t proto
        uint8_t ttl
        uint8_t addrlen
        uint8_t src[16]
        uint8_t dst[16]
        const uint8_t *l3
        uint32_t l3len
        uint16_t l3hlen
        # fragments
        uint8_t frag_more
        uint32_t frag_id
        uint32_t frag_off
        const uint8_t *frag_data
        uint32_t frag_len
        # layer 4
        const uint8_t *l4
        uint32_t l4len
        uint16_t sport
        uint16_t dport
        # TCP
        uint32_t seq
        uint32_t ack
        uint16_t win
        uint8_t flags
        uint8_t thlen
        const uint8_t *payload
        uint32_t paylen
        uint32_t seglen
        # TCP options
        uint8_t opts
        uint8_t wscale
        uint16_t mss
        uint32_t tsval
        uint32_t tsecr
        uint8_t nsack
        uint32_t sack[8]

    int mos_decode(uint16_t linktype, const uint8_t *data, uint32_t caplen, mos_pkt_t *p)
    int mos_decode_ip(const uint8_t *data, uint32_t len, mos_pkt_t *p)
    int mos_ipv4_csum_ok(const mos_pkt_t *p)
    int mos_tcp_csum_ok(const mos_pkt_t *p)
    void mos_fix_checksums(mos_pkt_t *p, uint8_t *l3_writable)
    uint32_t mos_flow_hash(const mos_pkt_t *p)
    void mos_flow_hash_seed(uint64_t seed)


cdef extern from "defrag.h" nogil:
    ctypedef struct mos_defrag_stats_t:
        uint64_t fragments
        uint64_t reassembled
        uint64_t timeouts
        uint64_t mem_drops
        uint64_t overlaps
        uint64_t invalid
        uint64_t mem_in_use

    ctypedef struct mos_defrag_t:
        pass

    mos_defrag_t *mos_defrag_new(size_t mem_cap, uint64_t timeout_ns)
    void mos_defrag_free(mos_defrag_t *d)
    const uint8_t *mos_defrag_add(mos_defrag_t *d, const mos_pkt_t *p, uint64_t now_ns, uint32_t *outlen)
    void mos_defrag_release(mos_defrag_t *d)
    void mos_defrag_expire(mos_defrag_t *d, uint64_t now_ns)
    const mos_defrag_stats_t *mos_defrag_stats(const mos_defrag_t *d)


cdef extern from "sha256.h" nogil:
    ctypedef struct mos_sha256_t:
        uint32_t h[8]
        uint64_t len
        uint8_t buf[64]
        uint32_t nbuf

    void mos_sha256_init(mos_sha256_t *s)
    void mos_sha256_update(mos_sha256_t *s, const uint8_t *data, size_t len)
    void mos_sha256_final(mos_sha256_t *s, uint8_t out[32])
    const char *mos_sha256_backend()
