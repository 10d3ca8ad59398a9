/* fuzz_capture.c: a capture file (pcap or pcapng) through the path `mos
 * streams` takes: the checksum verdict on its first packets
 * (mos_pcap_checksum_verdict), the capture port (native/pcapport.c over
 * native/capture.c) handing out bursts of 256 frames, decoding,
 * defragmentation and the engine configured as cmd_streams configures it
 * (digest on, 1 MiB buffers, 30 s timeout), with its handlers emulated:
 * CONN_END on the client side reads both digests and gap lists; with
 * --write-dir, CONN_NEW_DATA peeks everything new (with --overlap last, up
 * to what the receiver acknowledged).
 *
 * The input is the file itself, written to a memfd so the reader maps it as
 * it maps a file.  Its last byte picks the command line: bit 0 --write-dir,
 * bit 1 --overlap last, bit 2 --midstream.  The same bytes also go through
 * mos_capture_open_mem.
 *
 * Invariants: no crash, leak or sanitizer report; a reader error is a
 * one-line message naming the file; frames stay inside the input with
 * caplen <= wirelen; every flow ends; digests count no more bytes than
 * the stream's in-order frontier. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"
#include "fuzz_util.h"
#include "pcapport.h"

#define BURST 256

typedef struct rd {
    uint64_t id;
    uint64_t off[2];
} rd_t;
static rd_t rds[4096]; /* read offsets of the streams "monitor", by slot */

static void check_frames(const mos_frame_t *fr, int n, const uint8_t *lo, size_t size)
{
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(fr[i].caplen <= fr[i].wirelen, "frame %d caplen %u > wirelen %u", i,
                   fr[i].caplen, fr[i].wirelen);
        if (lo)
            FUZZ_CHECK(fr[i].data >= lo && fr[i].data + fr[i].caplen <= lo + size,
                       "frame %d [%p,+%u) outside the input", i, (const void *)fr[i].data,
                       fr[i].caplen);
    }
}

/* _Streams.on_data: peek all that is new on one side */
static void on_data(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side, int only_acked)
{
    static uint8_t out[1 << 16];
    if (slot >= 4096) return;
    rd_t *r = &rds[slot];
    if (r->id != f->id) {
        r->id = f->id;
        r->off[0] = r->off[1] = 0;
    }
    mos_rbuf_t *rb = &f->ep[side].rbuf;
    for (int guard = 0; guard < 64; guard++) {
        uint64_t off = r->off[side];
        if (off < rb->base) off = rb->base;
        const mos_span_t *g = mos_rbuf_gap_after(rb, off);
        if (g && g->off <= off) {
            off = g->off + g->len;
            g = mos_rbuf_gap_after(rb, off);
        }
        if (off >= rb->head) {
            r->off[side] = off;
            break;
        }
        uint64_t avail = rb->head - off;
        if (g && g->off < rb->head && g->off - off < avail) avail = g->off - off;
        if (only_acked) {
            uint64_t acked = mos_flow_acked(f, side);
            if (acked <= off) break;
            if (acked - off < avail) avail = acked - off;
        }
        if (avail > sizeof out) avail = sizeof out;
        uint32_t got = mos_rbuf_copy(rb, off, out, (uint32_t)avail);
        r->off[side] = off + got;
        if (!got) break;
    }
    mos_flow_consumed(e, f, side, r->off[side]);
}

static void on_end(mos_flow_t *f)
{
    for (int side = 0; side < 2; side++) {
        const mos_rbuf_t *rb = &f->ep[side].rbuf;
        if (f->digest) {
            mos_sha256_t copy = f->digest[side].sha;
            uint8_t out[32];
            mos_sha256_final(&copy, out);
            FUZZ_CHECK(f->digest[side].hashed_bytes + f->digest[side].lost <= rb->head,
                       "hashed %llu + lost %llu > head %llu",
                       (unsigned long long)f->digest[side].hashed_bytes,
                       (unsigned long long)f->digest[side].lost, (unsigned long long)rb->head);
        }
        uint64_t sum = 0;
        for (const mos_span_t *g = mos_rbuf_gap_after(rb, 0); g; g = mos_rbuf_gap_after(rb, g->off + g->len))
            sum += g->len;
        FUZZ_CHECK(sum <= rb->head, "gaps longer than the stream");
        fz_check_rbuf(rb);
    }
}

static void dispatch(mos_engine_t *e, int write_dir, int only_acked)
{
    uint32_t n;
    const mos_event_t *ev = mos_engine_events(e, &n);
    for (uint32_t i = 0; i < n; i++) {
        mos_flow_t *f = mos_engine_flow_any(e, ev[i].flow);
        FUZZ_CHECK(f && (f->flags & (MOS_FF_LIVE | MOS_FF_DYING)), "event for a free slot");
        if (ev[i].type == MOS_EV_NEW_DATA && write_dir)
            on_data(e, f, ev[i].flow, ev[i].side, only_acked);
        if (ev[i].type == MOS_EV_CONN_END) {
            if (write_dir) {
                on_data(e, f, ev[i].flow, 0, 0);
                on_data(e, f, ev[i].flow, 1, 0);
            }
            on_end(f);
        }
    }
    mos_engine_clear_events(e);
}

static void run_engine(mos_engine_t *e, const mos_frame_t *fr, int n, int write_dir, int only_acked)
{
    for (int i = 0; i < n;) {
        int c = mos_engine_process(e, fr, i, n, UINT64_MAX);
        dispatch(e, write_dir, only_acked);
        i = c;
    }
    mos_engine_reap(e);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setenv("MOS_SHA256", "builtin", 1); /* the C SHA-256, instrumented, not libcrypto */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    uint8_t opt = size ? data[size - 1] : 0;
    int write_dir = opt & 1, last = (opt >> 1) & 1, midstream = (opt >> 2) & 1;

    /* the in-memory reader, for its own sake */
    mos_capture_t *mc = mos_capture_open_mem(data, size, "fuzz.pcap", err, sizeof err);
    if (mc) {
        mos_frame_t fr[BURST];
        int n;
        while ((n = mos_capture_next(mc, fr, BURST, err, sizeof err)) > 0)
            check_frames(fr, n, data, size);
        if (n < 0) FUZZ_CHECK(strncmp(err, "fuzz.pcap", 9) == 0, "error names no file: %s", err);
        mos_capture_close(mc);
    } else {
        FUZZ_CHECK(strncmp(err, "fuzz.pcap", 9) == 0, "error names no file: %s", err);
    }

    /* the file path of `mos streams FILE` */
    int fd = memfd_create("fuzz.pcap", 0);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    for (size_t w = 0; w < size;) {
        ssize_t k = write(fd, data + w, size - w);
        FUZZ_CHECK(k > 0, "write to memfd");
        w += (size_t)k;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int verdict = mos_pcap_checksum_verdict(path, 1000);
    mos_pcap_reader_t *r = mos_pcap_reader_open(path, err, sizeof err);
    if (!r) {
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0, "open error names no file: %s", err);
        close(fd);
        return 0;
    }
    mos_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.buffer_size[0] = cfg.buffer_size[1] = 1u << 20; /* mos.Config().buffer_size */
    cfg.overlap[0] = cfg.overlap[1] = last ? MOS_OVERLAP_LAST : MOS_OVERLAP_FIRST;
    cfg.midstream = (uint8_t)midstream;
    cfg.checksum = MOS_CSUM_AUTO;
    cfg.digest = 1;
    cfg.max_flows = 1000000;
    cfg.tcp_timeout_ns = 30000000000ull;
    cfg.defrag_mem = 64u << 20;
    cfg.defrag_timeout_ns = 30000000000ull;
    mos_engine_t *e = mos_engine_new(&cfg);
    FUZZ_CHECK(e, "engine_new");
    /* the runtime decides on a capture's checksums ahead (loop: checksum_verdict) */
    if (verdict >= 0) mos_engine_set_checksum(e, verdict ? MOS_CSUM_VERIFY : MOS_CSUM_IGNORE);
    mos_interest_t m;
    memset(&m, 0, sizeof m);
    unsigned bit = MOS_EVBIT_INDEX(MOS_EV_CONN_END, MOS_HK_NONE, MOS_CLIENT);
    m.w[bit >> 6] |= 1ull << (bit & 63);
    if (write_dir)
        for (int side = 0; side < 2; side++) {
            bit = MOS_EVBIT_INDEX(MOS_EV_NEW_DATA, MOS_HK_RECV, side);
            m.w[bit >> 6] |= 1ull << (bit & 63);
        }
    mos_engine_set_interest(e, &m);
    mos_frame_t fr[BURST];
    int n;
    while ((n = mos_pcap_reader_rx(r, fr, BURST)) > 0) {
        check_frames(fr, n, NULL, 0);
        run_engine(e, fr, n, write_dir, last);
        mos_pcap_reader_rx_done(r);
    }
    const char *why = mos_pcap_reader_error(r);
    FUZZ_CHECK(why[0] == 0 || strncmp(why, path, strlen(path)) == 0, "reader error: %s", why);
    FUZZ_CHECK(mos_pcap_reader_tx(r, fr, 0) == 0, "reader tx");
    mos_engine_end_all(e, MOS_END_SHUTDOWN);
    dispatch(e, write_dir, 0);
    mos_engine_reap(e);
    FUZZ_CHECK(mos_engine_counters(e)->flows_live == 0, "flows live after end_all");
    fuzz_inject("capture", mos_engine_counters(e)->tcp > 0);
    mos_engine_free(e);
    mos_pcap_reader_close(r);
    close(fd);
    return 0;
}
