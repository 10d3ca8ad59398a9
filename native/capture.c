/* capture.c: pcap and pcapng reader over a memory mapping.
 *
 * Formats:
 *   pcap    https://www.tcpdump.org/manpages/pcap-savefile.5.html and
 *           draft-ietf-opsawg-pcap (both byte orders, micro/nanosecond magic)
 *   pcapng  draft-ietf-opsawg-pcapng (SHB, IDB, EPB, SPB, obsolete PB;
 *           other blocks are skipped and counted)
 *
 * Every length read from the file is checked against what is left of the
 * file before it is used: corrupt input gives an error message, never a read
 * out of bounds, and every step advances, so there is no endless loop.
 */
#define _GNU_SOURCE
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORD (256u * 1024u * 1024u)  /* larger records are corruption, not traffic */
#define MAX_IFACES 65536u                   /* frame.iface is 16 bits */
#define POPULATE (8ull << 20)               /* page tables filled this far ahead */

enum { FMT_PCAP = 1, FMT_PCAPNG = 2 };
enum { OWN_NONE = 0, OWN_MMAP = 1, OWN_MALLOC = 2 };

/* pcapng block types */
#define BT_SHB 0x0A0D0D0Au
#define BT_IDB 0x00000001u
#define BT_PB 0x00000002u  /* obsolete Packet Block */
#define BT_SPB 0x00000003u
#define BT_EPB 0x00000006u
#define BOM 0x1A2B3C4Du

typedef struct iface {
    uint16_t linktype;
    uint32_t snaplen;
    uint8_t tsresol;       /* raw if_tsresol byte: MSB clear 10^-v, set 2^-v */
    int64_t tsoffset;      /* if_tsoffset, seconds added to every timestamp */
} iface_t;

struct mos_capture {
    const uint8_t *base;
    size_t size;
    int own;
    int fmt;
    int swap;              /* file byte order differs from ours */
    int nsec;              /* pcap: nanosecond timestamps */
    uint32_t snaplen;      /* pcap */
    uint16_t linktype;     /* pcap: the file's link type */
    int first_linktype;
    uint64_t off;
    uint64_t last_ts;      /* SPBs carry no timestamp; they reuse the last one */
    iface_t *ifaces;
    uint32_t nifaces, capifaces;
    int failed;
    uint64_t populated;    /* mapped file bytes whose page tables are filled */
    /* a big mapped file: a helper thread fills the page tables ahead of the
     * reader, on another core (see filler_main) */
    pthread_t filler;
    int filler_on;
    pid_t filler_pid;             /* a forked child has no filler thread to join */
    _Atomic uint64_t reader_at;   /* the reader's offset, for the filler */
    _Atomic int filler_stop;
    char *name;
    char errmsg[512];
    mos_capture_stats_t stats;
};

static void filler_start(mos_capture_t *c);
static void filler_end(mos_capture_t *c);

/* ---- byte order helpers: unaligned loads via memcpy (one mov each) ---- */

static inline uint32_t rd32(const mos_capture_t *c, const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return c->swap ? __builtin_bswap32(v) : v;
}

static inline uint16_t rd16(const mos_capture_t *c, const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return c->swap ? __builtin_bswap16(v) : v;
}

static inline uint64_t rd64(const mos_capture_t *c, const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return c->swap ? __builtin_bswap64(v) : v;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Record a corruption at offset `at`; the capture stays failed. */
static int corrupt(mos_capture_t *c, uint64_t at, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(c->errmsg, sizeof c->errmsg, "%s: offset %llu: %s", c->name, (unsigned long long)at, why);
    c->failed = 1;
    return -1;
}

/* ---- timestamps ---- */

static uint64_t pcapng_ts(const iface_t *ifc, uint64_t t)
{
    uint8_t r = ifc->tsresol;
    uint64_t ns;
    if (r & 0x80) {
        /* 2^-k seconds per unit: ns = t * 1e9 / 2^k, in 128 bits to avoid overflow */
        unsigned k = r & 0x7f;
        unsigned __int128 x = (unsigned __int128)t * 1000000000u;
        ns = k >= 128 ? 0 : (uint64_t)(x >> k);
    } else if (r <= 9) {
        static const uint64_t mul[10] = {1000000000ull, 100000000ull, 10000000ull, 1000000ull,
                                         100000ull, 10000ull, 1000ull, 100ull, 10ull, 1ull};
        ns = t * mul[r];
    } else {
        unsigned k = r - 9;
        uint64_t div = 1;
        if (k > 19)
            return 0;
        while (k--)
            div *= 10;
        ns = t / div;
    }
    if (ifc->tsoffset)
        ns += (uint64_t)ifc->tsoffset * 1000000000ull;
    return ns;
}

/* ---- pcapng helpers ---- */

static int add_iface(mos_capture_t *c, uint64_t at, const uint8_t *b, uint32_t blen)
{
    if (blen < 20)
        return corrupt(c, at, "interface description block too short (%u bytes)", blen);
    if (c->nifaces >= MAX_IFACES)
        return corrupt(c, at, "more than %u interfaces", MAX_IFACES);
    if (c->nifaces == c->capifaces) {
        uint32_t n = c->capifaces ? c->capifaces * 2 : 4;
        iface_t *ni = realloc(c->ifaces, n * sizeof *ni);
        if (!ni)
            return corrupt(c, at, "out of memory");
        c->ifaces = ni;
        c->capifaces = n;
    }
    iface_t *ifc = &c->ifaces[c->nifaces];
    ifc->linktype = rd16(c, b + 8);
    ifc->snaplen = rd32(c, b + 12);
    ifc->tsresol = 6;  /* default: microseconds */
    ifc->tsoffset = 0;
    /* options: code(2) length(2) value padded to 4; a malformed list just
     * ends option parsing (the options are hints, the block is still usable) */
    uint32_t o = 16, end = blen - 4;
    while (o + 4 <= end) {
        uint16_t code = rd16(c, b + o), len = rd16(c, b + o + 2);
        uint32_t padded = ((uint32_t)len + 3u) & ~3u;
        if (code == 0 || o + 4 + padded > end)
            break;
        if (code == 9 && len >= 1)
            ifc->tsresol = b[o + 4];
        else if (code == 14 && len == 8)
            ifc->tsoffset = (int64_t)rd64(c, b + o + 4);
        o += 4 + padded;
    }
    if (c->first_linktype < 0)
        c->first_linktype = ifc->linktype;
    c->nifaces++;
    return 0;
}

/* Section header at c->off (byte order not yet known).  Returns block length
 * or -1.  Sets swap and resets the interface list (ids are per section). */
static int64_t read_shb(mos_capture_t *c)
{
    uint64_t at = c->off;
    size_t left = c->size - at;
    const uint8_t *b = c->base + at;
    if (left < 12)
        return corrupt(c, at, "section header block cut short (%zu bytes left)", left);
    uint32_t bom;
    memcpy(&bom, b + 8, 4);
    if (bom == BOM)
        c->swap = 0;
    else if (bom == __builtin_bswap32(BOM))
        c->swap = 1;
    else
        return corrupt(c, at, "bad byte-order magic 0x%08x in section header", bom);
    uint32_t blen = rd32(c, b + 4);
    if (blen < 28)
        return corrupt(c, at, "section header block length %u < 28", blen);
    if (blen % 4)
        return corrupt(c, at, "block length %u not a multiple of 4", blen);
    if (blen > left)
        return corrupt(c, at, "block length %u beyond end of file (%zu bytes left)", blen, left);
    if (rd32(c, b + blen - 4) != blen)
        return corrupt(c, at, "block trailing length %u != leading length %u", rd32(c, b + blen - 4), blen);
    uint16_t major = rd16(c, b + 12);
    if (major != 1)
        return corrupt(c, at, "unsupported pcapng version %u.%u", major, rd16(c, b + 14));
    c->nifaces = 0;
    return blen;
}

/* One pcapng block at c->off.  Returns 1 and fills *f for a packet, 0 for a
 * block consumed without a frame, -1 on corruption. */
/* Each record's place follows from the last one's length, so walking a
 * burst is a chain of dependent loads, and touching one line per record is
 * too sparse for the hardware's stream prefetcher: every header missed the
 * cache (116 ns a record on the 1M-packet bench capture, 64 ns with this,
 * 44 ns with the page tables filled too).  So every line of the bytes 4 KiB
 * ahead is asked for as this record's are handed out.  A prefetch past the
 * end of the mapping is ignored, never a fault. */
static inline void prefetch_ahead(const uint8_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 64)
        __builtin_prefetch(b + 4096 + i, 0, 0);
}

static int pcapng_block(mos_capture_t *c, mos_frame_t *f)
{
    uint64_t at = c->off;
    size_t left = c->size - at;
    const uint8_t *b = c->base + at;
    if (left < 12)
        return corrupt(c, at, "block header cut short (%zu bytes left)", left);
    uint32_t type;
    memcpy(&type, b, 4);  /* SHB type is a palindrome: test before byte order */
    if (type == BT_SHB) {
        int64_t n = read_shb(c);
        if (n < 0)
            return -1;
        c->off += (uint64_t)n;
        return 0;
    }
    type = rd32(c, b);
    uint32_t blen = rd32(c, b + 4);
    if (blen < 12)
        return corrupt(c, at, "block length %u < 12", blen);
    prefetch_ahead(b, blen < MAX_RECORD ? blen : 0);
    if (blen % 4)
        return corrupt(c, at, "block length %u not a multiple of 4", blen);
    if (blen > left)
        return corrupt(c, at, "block length %u beyond end of file (%zu bytes left)", blen, left);
    uint32_t trail = rd32(c, b + blen - 4);
    if (trail != blen)
        return corrupt(c, at, "block trailing length %u != leading length %u", trail, blen);

    const iface_t *ifc;
    uint32_t caplen, wirelen, ifid;
    uint64_t t;
    const uint8_t *data;
    switch (type) {
    case BT_IDB:
        if (add_iface(c, at, b, blen) < 0)
            return -1;
        c->off += blen;
        return 0;
    case BT_EPB:
    case BT_PB:
        if (blen < 32)
            return corrupt(c, at, "packet block length %u < 32", blen);
        if (type == BT_EPB) {
            ifid = rd32(c, b + 8);
        } else {
            ifid = rd16(c, b + 8);
        }
        t = ((uint64_t)rd32(c, b + 12) << 32) | rd32(c, b + 16);
        caplen = rd32(c, b + 20);
        wirelen = rd32(c, b + 24);
        if (caplen > MAX_RECORD)
            return corrupt(c, at, "captured length %u over 256 MiB", caplen);
        if (caplen > blen - 32)
            return corrupt(c, at, "captured length %u beyond block end (block %u bytes)", caplen, blen);
        if (ifid >= c->nifaces)
            return corrupt(c, at, "unknown interface id %u (%u defined)", ifid, c->nifaces);
        ifc = &c->ifaces[ifid];
        data = b + 28;
        f->ts_ns = pcapng_ts(ifc, t);
        c->last_ts = f->ts_ns;
        break;
    case BT_SPB:
        if (blen < 16)
            return corrupt(c, at, "simple packet block length %u < 16", blen);
        if (c->nifaces == 0)
            return corrupt(c, at, "simple packet block before any interface description");
        ifid = 0;
        ifc = &c->ifaces[0];
        wirelen = rd32(c, b + 8);
        /* captured bytes: the original length, cut by the snap length and by
         * the block (the block length is all the file tells us) */
        caplen = blen - 16;
        if (wirelen < caplen)
            caplen = wirelen;
        if (ifc->snaplen && ifc->snaplen < caplen)
            caplen = ifc->snaplen;
        if (caplen > MAX_RECORD)
            return corrupt(c, at, "captured length %u over 256 MiB", caplen);
        data = b + 12;
        f->ts_ns = c->last_ts;
        break;
    default:
        c->stats.blocks_skipped++;
        c->off += blen;
        return 0;
    }
    if (wirelen < caplen)
        wirelen = caplen;
    f->data = data;
    f->caplen = caplen;
    f->wirelen = wirelen;
    f->linktype = ifc->linktype;
    f->iface = (uint16_t)ifid;
    f->_pad = 0;
    c->off += blen;
    return 1;
}

/* ---- pcap ---- */

static int pcap_record(mos_capture_t *c, mos_frame_t *f)
{
    uint64_t at = c->off;
    size_t left = c->size - at;
    const uint8_t *b = c->base + at;
    if (left < 16)
        return corrupt(c, at, "record header cut short (%zu bytes left)", left);
    uint32_t sec = rd32(c, b), frac = rd32(c, b + 4);
    uint32_t caplen = rd32(c, b + 8), wirelen = rd32(c, b + 12);
    if (caplen > MAX_RECORD)
        return corrupt(c, at, "record length %u over 256 MiB", caplen);
    if (caplen > left - 16)
        return corrupt(c, at, "record cut short: length %u but %zu bytes left", caplen, left - 16);
    if (wirelen < caplen)
        wirelen = caplen;
    f->data = b + 16;
    f->caplen = caplen;
    f->wirelen = wirelen;
    prefetch_ahead(b, 16u + caplen);
    f->ts_ns = (uint64_t)sec * 1000000000ull + (c->nsec ? frac : (uint64_t)frac * 1000u);
    f->linktype = c->linktype;
    f->iface = 0;
    f->_pad = 0;
    c->off += 16u + caplen;
    return 1;
}

/* ---- open / close ---- */

static mos_capture_t *setup(const uint8_t *buf, size_t len, const char *name, char *err, size_t errlen)
{
    mos_capture_t *c = calloc(1, sizeof *c);
    if (!c) {
        seterr(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    c->name = strdup(name);
    if (!c->name) {
        free(c);
        seterr(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    c->base = buf;
    c->size = len;
    c->first_linktype = -1;
    if (len == 0) {
        /* an empty file holds no frames; that is not an error */
        c->fmt = FMT_PCAP;
        return c;
    }
    if (len < 4) {
        seterr(err, errlen, "%s: file too short for a capture header (%zu bytes)", name, len);
        goto fail;
    }
    uint32_t magic;
    memcpy(&magic, buf, 4);
    if (magic == BT_SHB) {
        c->fmt = FMT_PCAPNG;
        int64_t shb = read_shb(c);
        if (shb < 0)
            goto failmsg;
        c->off = (uint64_t)shb;
        /* the first link type: peek through the following blocks for an IDB */
        uint64_t o = c->off;
        while (o + 12 <= len) {
            uint32_t t = rd32(c, buf + o), bl = rd32(c, buf + o + 4);
            if (bl < 12 || bl % 4 || bl > len - o || t == BT_SHB)
                break;
            if (t == BT_IDB && bl >= 20) {
                c->first_linktype = rd16(c, buf + o + 8);
                break;
            }
            o += bl;
        }
        return c;
    }
    c->fmt = FMT_PCAP;
    switch (magic) {
    case 0xa1b2c3d4: c->swap = 0; c->nsec = 0; break;
    case 0xd4c3b2a1: c->swap = 1; c->nsec = 0; break;
    case 0xa1b23c4d: c->swap = 0; c->nsec = 1; break;
    case 0x4d3cb2a1: c->swap = 1; c->nsec = 1; break;
    default:
        seterr(err, errlen, "%s: not a pcap or pcapng file (magic 0x%08x)", name, magic);
        goto fail;
    }
    if (len < 24) {
        seterr(err, errlen, "%s: offset 0: pcap global header cut short (%zu of 24 bytes)", name, len);
        goto fail;
    }
    c->snaplen = rd32(c, buf + 16);
    /* the link-type field's upper bits carry FCS information; the type is the low 16 */
    c->linktype = (uint16_t)(rd32(c, buf + 20) & 0xffff);
    c->first_linktype = c->linktype;
    c->off = 24;
    return c;
failmsg:
    seterr(err, errlen, "%s", c->errmsg);
fail:
    free(c->name);
    free(c->ifaces);
    free(c);
    return NULL;
}

mos_capture_t *mos_capture_open_mem(const uint8_t *buf, size_t len, const char *name,
                                    char *err, size_t errlen)
{
    return setup(len ? buf : NULL, len, name ? name : "<memory>", err, errlen);
}

/* Read a whole non-mappable file (pipe, special file) into memory. */
static uint8_t *slurp(int fd, size_t *outlen)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *outlen = n;
    return buf;
}

mos_capture_t *mos_capture_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        seterr(err, errlen, "%s: is a directory", path);
        close(fd);
        return NULL;
    }
    const uint8_t *buf = NULL;
    size_t len = 0;
    int own = OWN_NONE;
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
            buf = m;
            len = (size_t)st.st_size;
            own = OWN_MMAP;
        }
    }
    if (own == OWN_NONE && !(S_ISREG(st.st_mode) && st.st_size == 0)) {
        uint8_t *m = slurp(fd, &len);
        if (!m) {
            seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno ? errno : ENOMEM));
            close(fd);
            return NULL;
        }
        buf = m;
        own = OWN_MALLOC;
        if (len == 0) {
            free(m);
            buf = NULL;
            own = OWN_NONE;
        }
    }
    close(fd);
    mos_capture_t *c = setup(buf, len, path, err, errlen);
    if (!c) {
        if (own == OWN_MMAP)
            munmap((void *)buf, len);
        else if (own == OWN_MALLOC)
            free((void *)buf);
        return NULL;
    }
    c->own = own;
    filler_start(c);
    return c;
}

/* The filler: page tables of a mapped file, filled by MADV_POPULATE_READ
 * at most FILL_LEAD ahead of the reader.  Filling them costs a sixth of a
 * bare engine run on a cached file (a walk of every page, its rmap and
 * memcg accounting); done here, that work leaves the reader's core.  The
 * lead bounds how much of a file too big for memory is pulled in early. */
#define FILL_LEAD (256ull << 20)
#define FILL_MIN (4 * POPULATE)   /* smaller files: the reader fills them itself */

static void *filler_main(void *arg)
{
    mos_capture_t *c = arg;
    uint64_t at = 0;
    while (at < c->size && !atomic_load_explicit(&c->filler_stop, memory_order_relaxed)) {
        uint64_t r = atomic_load_explicit(&c->reader_at, memory_order_relaxed);
        if (at > r + FILL_LEAD) {
            struct timespec ts = {0, 1000000}; /* 1 ms: the reader moves on meanwhile */
            nanosleep(&ts, NULL);
            continue;
        }
        if (at + POPULATE < r) at = r & ~4095ull; /* fell behind: no use filling the past */
        uint64_t len = c->size - at < POPULATE ? c->size - at : POPULATE;
#ifdef MADV_POPULATE_READ
        if (madvise((void *)(c->base + at), len, MADV_POPULATE_READ) != 0) break;
#else
        break;
#endif
        at += len;
    }
    return NULL;
}

static void filler_start(mos_capture_t *c)
{
    if (c->own != OWN_MMAP || c->size < FILL_MIN) return;
    atomic_store(&c->reader_at, 0);
    atomic_store(&c->filler_stop, 0);
    if (pthread_create(&c->filler, NULL, filler_main, c) == 0) {
        c->filler_on = 1;
        c->filler_pid = getpid();
    }
}

static void filler_end(mos_capture_t *c)
{
    if (!c->filler_on) return;
    c->filler_on = 0;
    if (c->filler_pid != getpid()) return; /* the thread stayed in the parent */
    atomic_store(&c->filler_stop, 1);
    pthread_join(c->filler, NULL);
}

/* Fill the page tables of the next window of a mapped file in one call
 * (MADV_POPULATE_READ, Linux 5.14): one bulk step instead of a fault per
 * few pages, and the prefetches of pcap_record then reach memory (a
 * prefetch of a page not yet mapped is dropped).  Older kernels say EINVAL:
 * the faults happen as before. */
static void populate(mos_capture_t *c)
{
#ifdef MADV_POPULATE_READ
    uint64_t from = c->populated > c->off ? c->populated : c->off & ~4095ull;
    uint64_t len = POPULATE;
    if (from + len > c->size) len = c->size - from;
    if (madvise((void *)(c->base + from), len, MADV_POPULATE_READ) == 0) {
        c->populated = from + len;
        return;
    }
#endif
    c->populated = c->size; /* not available: stop asking */
}

int mos_capture_next(mos_capture_t *c, mos_frame_t *frames, int max, char *err, size_t errlen)
{
    if (c->failed) {
        seterr(err, errlen, "%s", c->errmsg);
        return -1;
    }
    if (c->filler_on) /* the filler fills the page tables ahead of this */
        atomic_store_explicit(&c->reader_at, c->off, memory_order_relaxed);
    else if (c->own == OWN_MMAP && c->off + POPULATE / 2 > c->populated && c->populated < c->size)
        populate(c);
    int n = 0;
    while (n < max && c->off < c->size) {
        int r = c->fmt == FMT_PCAP ? pcap_record(c, &frames[n]) : pcapng_block(c, &frames[n]);
        if (r < 0) {
            /* hand back the good frames first; the next call reports the error */
            if (n > 0)
                return n;
            seterr(err, errlen, "%s", c->errmsg);
            return -1;
        }
        if (r > 0) {
            if (frames[n].caplen < frames[n].wirelen)
                c->stats.snapped++;
            c->stats.frames++;
            n++;
        }
    }
    return n;
}

uint64_t mos_capture_offset(const mos_capture_t *c) { return c->off; }
uint64_t mos_capture_size(const mos_capture_t *c) { return c->size; }
int mos_capture_linktype(const mos_capture_t *c) { return c->first_linktype; }
const mos_capture_stats_t *mos_capture_stats(const mos_capture_t *c) { return &c->stats; }

void mos_capture_close(mos_capture_t *c)
{
    if (!c)
        return;
    filler_end(c); /* before the mapping goes */
    if (c->own == OWN_MMAP)
        munmap((void *)c->base, c->size);
    else if (c->own == OWN_MALLOC)
        free((void *)c->base);
    free(c->ifaces);
    free(c->name);
    free(c);
}
