/* tcpseq.h: TCP sequence arithmetic, modulo 2^32 (RFC 9293 3.4), and the
 * mapping from 32-bit sequence numbers to 64-bit stream offsets.  Shared by
 * the passive endpoint model (monitor) and the active one (end host). */
#ifndef MOS_TCPSEQ_H
#define MOS_TCPSEQ_H
#include <stdint.h>

static inline int seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline int seq_leq(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }
static inline int seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
static inline int seq_geq(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }
static inline uint32_t seq_max(uint32_t a, uint32_t b) { return seq_gt(a, b) ? a : b; }
/* a <= x < b, all modulo 2^32 */
static inline int seq_in(uint32_t x, uint32_t a, uint32_t b) { return seq_leq(a, x) && seq_lt(x, b); }

/* A 64-bit stream offset for a sequence number: the offset is counted from
 * ISN+1 (so data carried in a SYN starts at 0).  We keep one reference pair
 * (ref_seq, ref_off) close to the current sequence space; any seq within
 * 2^31 of the reference maps without ambiguity, across any number of wraps. */
static inline int64_t seq_to_off(uint32_t seq, uint32_t ref_seq, uint64_t ref_off)
{
    return (int64_t)ref_off + (int64_t)(int32_t)(seq - ref_seq);
}

#endif
