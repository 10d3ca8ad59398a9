/* seqmap.h: sequence-number translation for one direction of a TCP flow
 * whose payload an in-line middlebox lengthened or shortened.
 *
 * The sender numbers its bytes in its own ("raw") space; once a handler
 * inserts or removes bytes, the receiver sees another ("wire") space.  An
 * edit says: raw bytes [seq, seq+del) are replaced by ins_len new bytes.
 * Edits never overlap.  From the sorted list the map answers:
 *
 *   out(seq)     raw sequence number of a segment start -> wire one
 *   in(ack)      wire acknowledgement (or SACK edge) -> raw one
 *   rewrite()    a raw segment -> its wire payload and sequence number,
 *                applying every edit it touches (so a retransmission
 *                carries the same bytes as the original did)
 *
 * An insertion (del == 0) belongs to the byte at seq (or, with `after`, to
 * the byte before it): the segment holding that byte carries the inserted
 * bytes.  A segment touching
 * any part of a replaced range carries all of its new bytes.  Edits the
 * receiver has acknowledged are folded into one running delta (acked()), so
 * the list holds only edits in flight.  A segment wholly below the folded
 * edits maps with that delta: the receiver has all of it and drops it as a
 * duplicate, which is all a stale retransmission can ask for.
 *
 * Pure functions of (map, numbers): no clock, no I/O (sans-I/O, for tests).
 * All arithmetic is modulo 2^32 (RFC 9293 3.4). */
#ifndef MOS_SEQMAP_H
#define MOS_SEQMAP_H
#include <stdint.h>

#define MOS_SEQMAP_MAX 64        /* edits in flight per direction */
#define MOS_SEQMAP_MAX_INS 65535 /* bytes one edit may insert */

typedef struct mos_edit {
    uint32_t seq;       /* raw sequence number of the first byte replaced */
    uint32_t del;       /* raw bytes removed from there */
    uint32_t ins_len;   /* bytes put in their place */
    uint8_t after;      /* insertion (del 0) that belongs to the byte before
                           seq: bytes appended at the end of a segment */
    uint8_t *ins;       /* those bytes (owned; NULL when ins_len is 0) */
} mos_edit_t;

typedef struct mos_seqmap {
    uint32_t delta;     /* wire - raw for everything past the folded edits */
    uint32_t n;         /* edits in flight, sorted by seq */
    mos_edit_t e[MOS_SEQMAP_MAX];
} mos_seqmap_t;

enum {
    MOS_SEQMAP_OK = 0,
    MOS_SEQMAP_SAME = 1,        /* this very edit is already there: nothing to do */
    MOS_SEQMAP_FULL = -1,       /* MOS_SEQMAP_MAX edits in flight */
    MOS_SEQMAP_OVERLAP = -2,    /* overlaps a different edit */
    MOS_SEQMAP_NOMEM = -3,
    MOS_SEQMAP_EMPTY = -4,      /* removes nothing and inserts nothing, or too big */
};

void mos_seqmap_init(mos_seqmap_t *m);
void mos_seqmap_clear(mos_seqmap_t *m);     /* frees the inserted bytes */
int mos_seqmap_add(mos_seqmap_t *m, uint32_t seq, uint32_t del, const uint8_t *ins,
                   uint32_t ins_len, int after);
/* 1 when exactly this edit is already in the map */
int mos_seqmap_has(const mos_seqmap_t *m, uint32_t seq, uint32_t del, const uint8_t *ins,
                   uint32_t ins_len, int after);
/* fold every leading edit whose new bytes the receiver acknowledged (an
 * acknowledgement number as the receiver sent it, in the wire space) */
void mos_seqmap_acked(mos_seqmap_t *m, uint32_t wire_ack);
static inline int mos_seqmap_active(const mos_seqmap_t *m) { return m->n || m->delta; }

uint32_t mos_seqmap_out(const mos_seqmap_t *m, uint32_t seq);
uint32_t mos_seqmap_in(const mos_seqmap_t *m, uint32_t ack);

/* The wire form of the raw segment [seq, seq+len) carrying pay (len bytes):
 * its payload goes to out (cap bytes), its sequence number to *out_seq.
 * Returns the payload length, or UINT32_MAX when it does not fit cap. */
uint32_t mos_seqmap_rewrite(const mos_seqmap_t *m, uint32_t seq, const uint8_t *pay,
                            uint32_t len, uint8_t *out, uint32_t cap, uint32_t *out_seq);
/* The length rewrite() would return (no copy). */
uint32_t mos_seqmap_rewrite_len(const mos_seqmap_t *m, uint32_t seq, uint32_t len);

#endif
