/* rewrite.h: the wire form of a TCP segment of a flow whose payload was
 * lengthened or shortened in-line (see seqmap.h).
 *
 * A frame from side A carries A's bytes (sequence number, payload: A's map)
 * and acknowledges B's (acknowledgement number, SACK blocks: B's map).  The
 * rewrite applies the edits its payload touches, moves its numbers into the
 * receiver's space, sets the IP length and recomputes the checksums.  Pure:
 * frame bytes in, frame bytes out. */
#ifndef MOS_REWRITE_H
#define MOS_REWRITE_H
#include <stdint.h>

#include "seqmap.h"

/* The rewritten frame in out (cap bytes).  Returns its length; 0 when there
 * is nothing to rewrite (neither map active, not a whole TCP segment: an IP
 * fragment, a snapped frame); UINT32_MAX when it does not fit cap.
 * Link-layer padding after the IP datagram is not copied. */
uint32_t mos_rewrite_segment(const mos_seqmap_t *own, const mos_seqmap_t *peer, uint16_t linktype,
                             const uint8_t *in, uint32_t len, uint8_t *out, uint32_t cap);

/* Cut a TCP segment frame whose payload exceeds max_pay into pieces of at
 * most max_pay bytes (an edit that lengthened a full-sized segment: RFC
 * 9293 3.7.1, a sender's segments stay within the receiver's MSS).  Each
 * piece repeats the headers with its own sequence number, IP length and
 * checksums; an IPv4 piece k gets IP ID + k (as GSO does); PSH and FIN ride
 * on the last piece only.  The pieces go to out one after the other, their
 * lengths to lens.  Returns the count (1: nothing to cut, out untouched), or
 * 0 when they do not fit cap or max_pieces, or the frame is not a whole TCP
 * segment. */
uint32_t mos_split_segment(uint16_t linktype, const uint8_t *in, uint32_t len, uint32_t max_pay,
                           uint8_t *out, uint32_t cap, uint32_t *lens, uint32_t max_pieces);

/* Bytes the rewritten frame needs at most (for sizing out). */
uint32_t mos_rewrite_bound(const mos_seqmap_t *own, uint32_t len);

#endif
