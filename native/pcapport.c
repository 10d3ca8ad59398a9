/* pcapport.c: capture files as ports (see pcapport.h). */
#define _GNU_SOURCE
#include "pcapport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

#define SNAPLEN 262144u      /* the header's snaplen: what tcpdump writes today */
#define WBUF (1u << 20)      /* stdio buffer of a writer */

struct mos_pcap_reader {
    mos_capture_t *cap;
    int ended;
    char err[512];
};

mos_pcap_reader_t *mos_pcap_reader_open(const char *path, char *err, size_t errlen)
{
    mos_pcap_reader_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    r->cap = mos_capture_open(path, err, errlen);
    if (!r->cap) {
        free(r);
        return NULL;
    }
    return r;
}

int mos_pcap_reader_rx(void *h, mos_frame_t *frames, int max)
{
    mos_pcap_reader_t *r = h;
    if (r->ended) return -1;
    int n = mos_capture_next(r->cap, frames, max, r->err, sizeof r->err);
    if (n > 0) return n;
    if (n == 0) r->err[0] = 0;  /* clean end of file */
    r->ended = 1;
    return -1;
}

void mos_pcap_reader_rx_done(void *h) { (void)h; }  /* frames live as long as the mapping */

int mos_pcap_reader_tx(void *h, const mos_frame_t *frames, int n)
{
    (void)h, (void)frames, (void)n;
    return 0;
}

const char *mos_pcap_reader_error(const mos_pcap_reader_t *r) { return r->ended ? r->err : ""; }
const mos_capture_t *mos_pcap_reader_capture(const mos_pcap_reader_t *r) { return r->cap; }

void mos_pcap_reader_close(mos_pcap_reader_t *r)
{
    if (!r) return;
    mos_capture_close(r->cap);
    free(r);
}

struct mos_pcap_writer {
    FILE *f;
    char *buf;
    uint64_t frames;
    char path[256];
    char err[512];
};

static void write_failed(mos_pcap_writer_t *w, int e)
{
    if (!w->err[0])
        snprintf(w->err, sizeof w->err, "%s: write failed: %s", w->path, strerror(e ? e : EIO));
}

mos_pcap_writer_t *mos_pcap_writer_open(const char *path, int linktype, char *err, size_t errlen)
{
    mos_pcap_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->f = fopen(path, "wb");
    if (!w->f) {
        snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
        free(w);
        return NULL;
    }
    w->buf = malloc(WBUF);
    if (w->buf) setvbuf(w->f, w->buf, _IOFBF, WBUF);
    /* pcap file header, host byte order (readers detect it by the magic) */
    struct {
        uint32_t magic;
        uint16_t major, minor;
        int32_t thiszone;
        uint32_t sigfigs, snaplen, linktype;
    } hdr = {0xa1b23c4du, 2, 4, 0, 0, SNAPLEN, (uint32_t)linktype};
    if (fwrite(&hdr, sizeof hdr, 1, w->f) != 1) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        fclose(w->f);
        free(w->buf);
        free(w);
        return NULL;
    }
    return w;
}

int mos_pcap_writer_rx(void *h, mos_frame_t *frames, int max)
{
    (void)h, (void)frames, (void)max;
    return 0;
}

void mos_pcap_writer_rx_done(void *h) { (void)h; }

int mos_pcap_writer_tx(void *h, const mos_frame_t *frames, int n)
{
    mos_pcap_writer_t *w = h;
    int i;
    if (w->err[0]) return 0;
    for (i = 0; i < n; i++) {
        const mos_frame_t *fr = &frames[i];
        uint32_t caplen = fr->caplen > SNAPLEN ? SNAPLEN : fr->caplen;
        uint32_t wirelen = fr->wirelen > fr->caplen ? fr->wirelen : fr->caplen;
        uint32_t rec[4] = {(uint32_t)(fr->ts_ns / 1000000000ull),
                           (uint32_t)(fr->ts_ns % 1000000000ull), caplen, wirelen};
        if (fwrite(rec, sizeof rec, 1, w->f) != 1 ||
            (caplen && fwrite(fr->data, caplen, 1, w->f) != 1)) {
            write_failed(w, errno);
            break;
        }
        w->frames++;
    }
    return i;
}

uint64_t mos_pcap_writer_frames(const mos_pcap_writer_t *w) { return w->frames; }
const char *mos_pcap_writer_error(const mos_pcap_writer_t *w) { return w->err; }

int mos_pcap_writer_close(mos_pcap_writer_t *w, char *err, size_t errlen)
{
    if (!w) return 0;
    errno = 0;
    if (fflush(w->f) != 0) write_failed(w, errno);  /* a full disk shows up here */
    if (fclose(w->f) != 0) write_failed(w, errno);
    free(w->buf);
    int rc = 0;
    if (w->err[0]) {
        snprintf(err, errlen, "%s", w->err);
        rc = -1;
    }
    free(w);
    return rc;
}

int mos_pcap_checksum_verdict(const char *path, uint32_t sample)
{
    char err[256];
    mos_capture_t *c = mos_capture_open(path, err, sizeof err);
    if (!c) return -1;
    mos_frame_t fr[64];
    mos_pkt_t p;
    uint32_t seen = 0, bad = 0;
    int n;
    while (seen < sample && (n = mos_capture_next(c, fr, 64, err, sizeof err)) > 0) {
        for (int i = 0; i < n && seen < sample; i++) {
            if (mos_decode(fr[i].linktype, fr[i].data, fr[i].caplen, &p) != MOS_DEC_TCP) continue;
            int ok4 = p.ipver == 4 ? mos_ipv4_csum_ok(&p) : 1;
            int okt = mos_tcp_csum_ok(&p);
            if (okt < 0) continue; /* snapped: cannot tell */
            seen++;
            bad += (ok4 == 0 || okt == 0);
        }
    }
    mos_capture_close(c);
    return bad * 10 > seen ? 0 : 1;
}
