/* capture.h: read pcap and pcapng files into frames, without copying.
 *
 * The file is mapped into memory; a frame points into the mapping and stays
 * valid until mos_capture_close().  Nothing here allocates per frame.
 */
#ifndef MOS_CAPTURE_H
#define MOS_CAPTURE_H
#include <stddef.h>
#include <stdint.h>

/* pcap LINKTYPE_ values we decode (https://www.tcpdump.org/linktypes.html) */
enum {
    MOS_LT_NULL = 0,       /* BSD loopback: 4-byte host-order AF_ */
    MOS_LT_ETHERNET = 1,
    MOS_LT_RAW = 101,      /* raw IPv4 or IPv6 (DLT_RAW is 12 or 14 on some BSDs) */
    MOS_LT_LOOP = 108,     /* OpenBSD loopback: 4-byte network-order AF_ */
    MOS_LT_SLL = 113,      /* Linux cooked v1 */
    MOS_LT_IPV4 = 228,
    MOS_LT_IPV6 = 229,
    MOS_LT_SLL2 = 276,     /* Linux cooked v2 */
};

typedef struct mos_frame {
    const uint8_t *data;   /* first captured byte */
    uint32_t caplen;       /* bytes present at data */
    uint32_t wirelen;      /* length on the wire (>= caplen) */
    uint64_t ts_ns;        /* capture time, nanoseconds since the epoch */
    uint16_t linktype;     /* MOS_LT_* (or any other LINKTYPE_ value) */
    uint16_t iface;        /* pcapng interface id, 0 for pcap */
    uint32_t _pad;
} mos_frame_t;

typedef struct mos_capture_stats {
    uint64_t frames;       /* frames returned */
    uint64_t snapped;      /* frames with caplen < wirelen (returned; decoder copes) */
    uint64_t blocks_skipped; /* pcapng blocks we do not use (NRB, ISB, custom...) */
} mos_capture_stats_t;

typedef struct mos_capture mos_capture_t;

/* Open a capture.  On failure returns NULL and writes a one-line reason to
 * err (it names the path; e.g. "x.pcap: not a pcap or pcapng file (magic
 * 0x12345678)"). */
mos_capture_t *mos_capture_open(const char *path, char *err, size_t errlen);

/* Fill frames[0..max).  Returns the number filled; 0 at the end of the file;
 * -1 when the file is corrupt at the current record (err gets
 * "PATH: offset N: reason", e.g. a record length over 256 MiB, a cut-short
 * record at the end, an unknown interface id).  Frames returned before an
 * error are valid; after -1 further calls return -1 again. */
int mos_capture_next(mos_capture_t *c, mos_frame_t *frames, int max, char *err, size_t errlen);

uint64_t mos_capture_offset(const mos_capture_t *c); /* offset of the next record */
uint64_t mos_capture_size(const mos_capture_t *c);   /* file size in bytes */
int mos_capture_linktype(const mos_capture_t *c);    /* first interface's link type */
const mos_capture_stats_t *mos_capture_stats(const mos_capture_t *c);
void mos_capture_close(mos_capture_t *c);

/* Open over a caller-owned buffer (for fuzzing and tests); the buffer must
 * outlive the capture.  name is used in messages. */
mos_capture_t *mos_capture_open_mem(const uint8_t *buf, size_t len, const char *name,
                                    char *err, size_t errlen);

#endif
