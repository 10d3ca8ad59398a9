/* defrag.h: IPv4 and IPv6 fragment reassembly with a memory cap and timeout.
 *
 * Policy: first fragment wins on overlap (as the BSD/Linux "first" target
 * policy); overlapping fragments are counted.  A datagram is released when
 * the last fragment (MF=0) and every byte before it have arrived.  Sans-I/O:
 * time comes in as an argument.
 */
#ifndef MOS_DEFRAG_H
#define MOS_DEFRAG_H
#include <stddef.h>
#include <stdint.h>
#include "decode.h"

typedef struct mos_defrag_stats {
    uint64_t fragments;     /* fragments fed */
    uint64_t reassembled;   /* datagrams completed */
    uint64_t timeouts;      /* incomplete datagrams dropped by timeout */
    uint64_t mem_drops;     /* fragments or datagrams dropped over the memory cap */
    uint64_t overlaps;      /* fragments overlapping stored data */
    uint64_t invalid;       /* absurd fragments: size over 65535, zero length not last, ... */
    uint64_t mem_in_use;    /* bytes held now */
} mos_defrag_stats_t;

typedef struct mos_defrag mos_defrag_t;

mos_defrag_t *mos_defrag_new(size_t mem_cap, uint64_t timeout_ns);
void mos_defrag_free(mos_defrag_t *d);

/* Feed one fragment (p as filled by mos_decode with result MOS_DEC_FRAGMENT).
 * When it completes a datagram, returns the reassembled IP datagram (IP
 * header of the first fragment with lengths, fragment fields and checksum
 * rewritten so that mos_decode_ip() sees an unfragmented packet) and sets
 * *outlen.  Otherwise returns NULL.  A returned buffer stays valid until
 * mos_defrag_release(). */
const uint8_t *mos_defrag_add(mos_defrag_t *d, const mos_pkt_t *p, uint64_t now_ns, uint32_t *outlen);

/* Free the datagrams returned so far (the engine calls it once per burst). */
void mos_defrag_release(mos_defrag_t *d);

/* Drop incomplete datagrams older than the timeout. */
void mos_defrag_expire(mos_defrag_t *d, uint64_t now_ns);
/* When the oldest incomplete datagram times out (UINT64_MAX: none, or no timeout). */
uint64_t mos_defrag_deadline(const mos_defrag_t *d);

const mos_defrag_stats_t *mos_defrag_stats(const mos_defrag_t *d);

#endif
