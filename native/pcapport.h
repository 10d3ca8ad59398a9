/* pcapport.h: capture files as ports (port.h), so a capture runs through the
 * same loop as AF_PACKET and DPDK.
 *
 *   reader  rx hands out the file's frames in order (no copy: they point
 *           into the mapping until rx_done); rx returns -1 once the file has
 *           ended, cleanly or at a corrupt record (mos_pcap_reader_error
 *           says which).  tx refuses every frame (returns 0).
 *   writer  tx appends each frame as a classic pcap record (nanosecond
 *           timestamps, the link type given at open) with the frame's own
 *           timestamp; a write error (disk full, I/O error) is kept, tx then
 *           queues nothing, and mos_pcap_writer_close reports it.  rx
 *           returns 0 (a writer receives nothing).
 *
 * The file format: https://www.tcpdump.org/manpages/pcap-savefile.5.html
 * (draft-ietf-opsawg-pcap), magic 0xa1b23c4d for nanosecond timestamps.
 */
#ifndef MOS_PCAPPORT_H
#define MOS_PCAPPORT_H
#include <stddef.h>
#include <stdint.h>
#include "capture.h"

typedef struct mos_pcap_reader mos_pcap_reader_t;

mos_pcap_reader_t *mos_pcap_reader_open(const char *path, char *err, size_t errlen);
int mos_pcap_reader_rx(void *h, mos_frame_t *frames, int max);
void mos_pcap_reader_rx_done(void *h);
int mos_pcap_reader_tx(void *h, const mos_frame_t *frames, int n);
/* "" after a clean end of file (or before it), else "PATH: offset N: reason" */
const char *mos_pcap_reader_error(const mos_pcap_reader_t *r);
const mos_capture_t *mos_pcap_reader_capture(const mos_pcap_reader_t *r);
void mos_pcap_reader_close(mos_pcap_reader_t *r);

typedef struct mos_pcap_writer mos_pcap_writer_t;

/* Create (truncate) path and write the file header.  NULL and a one-line
 * reason naming the path when it cannot be opened or written. */
mos_pcap_writer_t *mos_pcap_writer_open(const char *path, int linktype, char *err,
                                        size_t errlen);
int mos_pcap_writer_rx(void *h, mos_frame_t *frames, int max);
void mos_pcap_writer_rx_done(void *h);
int mos_pcap_writer_tx(void *h, const mos_frame_t *frames, int n);
uint64_t mos_pcap_writer_frames(const mos_pcap_writer_t *w);
/* "" while every write succeeded, else "PATH: write failed: reason" */
const char *mos_pcap_writer_error(const mos_pcap_writer_t *w);
/* Flush and close; 0, or -1 with the first error in err (data may be lost). */
int mos_pcap_writer_close(mos_pcap_writer_t *w, char *err, size_t errlen);

/* Whether a capture's TCP checksums deserve verifying: 1 (verify) unless more
 * than one in ten of its first `sample` checkable TCP packets fail, as on a
 * host with checksum offload (0: ignore); -1 if the file cannot be read. */
int mos_pcap_checksum_verdict(const char *path, uint32_t sample);

#endif
