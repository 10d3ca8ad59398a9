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

/* Bytes the rewritten frame needs at most (for sizing out). */
uint32_t mos_rewrite_bound(const mos_seqmap_t *own, uint32_t len);

#endif
