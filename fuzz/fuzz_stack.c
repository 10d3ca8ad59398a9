/* fuzz_stack.c: the end host's stack (mos/endhost/stack.h), two of them
 * (client A, server B listening on port 80) on a wire the input scripts.
 *
 * Each input byte is one step: carry, drop or duplicate the next frame
 * either way, let time pass to the next timer, connect (IPv4 or IPv6, with
 * or without buffer sizes), accept, send, receive, shut down, close,
 * abort, change a socket's buffers, close and reopen the listener, or hand
 * either stack a frame made of input bytes (a forged TCP segment with any
 * flags and numbers, or raw bytes).  Small tables (sockets, TIME-WAIT,
 * SYN queue) make the bounds and the evictions happen.  Apps send a
 * pattern that depends on the sender's port and the offset (byte k is
 * (k * 7 + port) & 255), so a receiver checks every byte it reads.
 * Invariants:
 *   - every byte read is the one the peer sent at that offset (until a
 *     forged segment may have written into that connection's stream);
 *   - the counters stay within their bounds (connections <= max_conns,
 *     TIME-WAIT <= max_time_wait, listeners <= 1);
 *   - every frame a stack sends is a whole Ethernet frame with valid IP and
 *     TCP checksums when it is TCP;
 *   - the deadline is not in the past after a timer call. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "stack.h"

#define QMAX 128
#define NSOCK 16            /* max_conns of each stack */
#define FMAX 1600

typedef struct {
    uint8_t b[FMAX];
    uint32_t n;
} frame_t;

typedef struct {
    frame_t q[QMAX];
    int n;
} queue_t;

typedef struct {            /* what the harness knows of one socket */
    int used;
    int forged;             /* a forged segment may have reached its stream */
    uint64_t sent, read;
} track_t;

static const uint8_t IP_A[16] = {198, 18, 0, 1}, IP_B[16] = {198, 18, 0, 2};
static const uint8_t IP6_B[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
static const uint8_t IP6_A[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static uint8_t pattern(uint64_t k, uint16_t port) { return (uint8_t)(k * 7 + port); }

static mos_stack_t *make(int which)
{
    mos_stack_cfg_t c;
    mos_stack_cfg_default(&c);
    memcpy(c.mac, which ? "\x02\x00\x00\x00\x00\x02" : "\x02\x00\x00\x00\x00\x01", 6);
    c.naddrs = 2;
    c.addrs[0].ver = 4;
    c.addrs[0].prefix = 24;
    memcpy(c.addrs[0].addr, which ? IP_B : IP_A, 16);
    c.addrs[1].ver = 6;
    c.addrs[1].prefix = 64;
    memcpy(c.addrs[1].addr, which ? IP6_B : IP6_A, 16);
    c.max_conns = NSOCK;
    c.max_time_wait = 3;
    c.tcp.mss = 536;
    c.tcp.rcvbuf = 8192;
    c.tcp.sndbuf = 8192;
    c.tcp.time_wait = 2000000000ull;
    c.seed = 1;
    return mos_stack_new(&c);
}

static void check_frame(const uint8_t *f, uint32_t n)
{
    FUZZ_CHECK(n >= 14 && n <= 1514, "frame of %u bytes", n);
    uint16_t et = rd16(f + 12);
    if (et == 0x0800 && n >= 34 && f[23] == 6) {
        uint32_t ihl = (f[14] & 15) * 4u, tot = rd16(f + 16);
        FUZZ_CHECK(fz_fold(fz_sum(0, f + 14, ihl)) == 0xffff, "IPv4 header checksum");
        FUZZ_CHECK(tot + 14 <= n, "IPv4 length %u in a frame of %u", tot, n);
        FUZZ_CHECK(fz_ip_tcp_csum_ok(f + 14, tot) == 1, "TCP checksum (IPv4)");
    } else if (et == 0x86dd && n >= 54 && f[20] == 6) {
        FUZZ_CHECK(fz_ip_tcp_csum_ok(f + 14, 40u + rd16(f + 18)) == 1, "TCP checksum (IPv6)");
    }
}

static void drain(mos_stack_t *st, queue_t *q, uint64_t now)
{
    uint8_t buf[FMAX];
    uint32_t n;
    while ((n = mos_stack_output(st, buf, sizeof buf, now)) > 0) {
        check_frame(buf, n);
        if (q->n == QMAX) continue; /* the wire is full: lost */
        memcpy(q->q[q->n].b, buf, n);
        q->q[q->n++].n = n;
    }
}

static void pop(queue_t *q)
{
    memmove(&q->q[0], &q->q[1], (size_t)(q->n - 1) * sizeof q->q[0]);
    q->n--;
}

static void check_stats(mos_stack_t *st)
{
    const mos_stack_stats_t *s = mos_stack_stats(st);
    FUZZ_CHECK(s->conns + s->listeners <= NSOCK, "%u connections, %u listeners", s->conns,
               s->listeners);
    FUZZ_CHECK(s->time_wait <= 3, "%u in TIME-WAIT", s->time_wait);
    FUZZ_CHECK(s->listeners <= 1, "%u listeners", s->listeners);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    mos_stack_t *st[2] = {make(0), make(1)};
    queue_t *q = calloc(2, sizeof *q); /* q[0]: A to B, q[1]: B to A */
    track_t tr[2][NSOCK];
    memset(tr, 0, sizeof tr);
    uint64_t now = 1000000;
    int ls = mos_stack_listen(st[1], 0, 80, 1 + fin_u8(&in) % 6);
    for (int steps = 0; steps < 4000 && !fin_empty(&in); steps++) {
        uint8_t op = fin_u8(&in);
        int side = op & 1, s = fin_u8(&in) % NSOCK;
        track_t *t = &tr[side][s];
        switch ((op >> 1) % 14) {
        case 0: case 1: case 2: /* carry the next frame */
            if (q[side].n) {
                mos_stack_input(st[!side], q[side].q[0].b, q[side].q[0].n, now);
                pop(&q[side]);
            }
            break;
        case 3: /* lose it */
            if (q[side].n) pop(&q[side]);
            break;
        case 4: /* duplicate it */
            if (q[side].n && q[side].n < QMAX) q[side].q[q[side].n++] = q[side].q[0];
            break;
        case 5: { /* time passes to the next timer (or a little) */
            uint64_t d = 0;
            for (int k = 0; k < 2; k++) {
                uint64_t x = mos_stack_deadline(st[k]);
                if (x && (!d || x < d)) d = x;
            }
            now = d && d > now ? d : now + 1000000ull * (1 + fin_u8(&in));
            for (int k = 0; k < 2; k++) {
                mos_stack_timer(st[k], now);
                uint64_t x = mos_stack_deadline(st[k]);
                FUZZ_CHECK(!x || x > now, "deadline %llu not after now %llu",
                           (unsigned long long)x, (unsigned long long)now);
            }
            break;
        }
        case 6: { /* A connects */
            int v6 = fin_u8(&in) & 1;
            uint32_t bufs = fin_u8(&in);
            int c = mos_stack_connect_bufs(st[0], v6 ? 6 : 4, v6 ? IP6_B : IP_B,
                                           (bufs & 1) ? 81 : 80, 0, now,
                                           (bufs & 2) ? 512u << (bufs >> 5) : 0,
                                           (bufs & 4) ? 512u << ((bufs >> 3) & 3) : 0);
            if (c >= 0 && c < NSOCK) memset(&tr[0][c], 0, sizeof tr[0][c]), tr[0][c].used = 1;
            break;
        }
        case 7: { /* B accepts */
            int c = ls >= 0 ? mos_stack_accept(st[1], ls) : -1;
            if (c >= 0 && c < NSOCK) memset(&tr[1][c], 0, sizeof tr[1][c]), tr[1][c].used = 1;
            break;
        }
        case 8: { /* send the pattern */
            if (!t->used) break;
            uint8_t ver, la[16], ra[16];
            uint16_t lp, rp;
            if (mos_stack_names(st[side], s, &ver, la, &lp, ra, &rp) < 0) break;
            uint8_t buf[4096];
            uint32_t n = 1 + fin_u16(&in) % sizeof buf;
            for (uint32_t i = 0; i < n; i++) buf[i] = pattern(t->sent + i, lp);
            int r = mos_stack_send(st[side], s, buf, n);
            if (r > 0) t->sent += (uint64_t)r;
            break;
        }
        case 9: { /* read and check */
            if (!t->used) break;
            uint8_t ver, la[16], ra[16];
            uint16_t lp, rp;
            if (mos_stack_names(st[side], s, &ver, la, &lp, ra, &rp) < 0) break;
            uint8_t buf[4096];
            int r = mos_stack_recv(st[side], s, buf, 1 + fin_u16(&in) % sizeof buf);
            for (int i = 0; i < r && !t->forged; i++)
                FUZZ_CHECK(buf[i] == pattern(t->read + (uint64_t)i, rp),
                           "byte %llu of port %u's stream", (unsigned long long)(t->read + i), rp);
            if (r > 0) t->read += (uint64_t)r;
            break;
        }
        case 10: { /* end it: shut down, close or abort */
            uint8_t how = fin_u8(&in) % 3;
            if (how == 0) mos_stack_shutdown(st[side], s);
            else if (how == 1) mos_stack_close(st[side], s), t->used = 0;
            else mos_stack_abort(st[side], s), t->used = 0;
            if (side == 1 && s == ls && how) ls = -1;
            break;
        }
        case 11: /* buffers */
            mos_stack_set_buffers(st[side], s, (uint32_t)fin_u16(&in) * 4,
                                  (uint32_t)fin_u16(&in) * 4);
            break;
        case 12: /* the listener goes, or comes back */
            if (ls >= 0) {
                mos_stack_close(st[1], ls);
                ls = -1;
            } else {
                ls = mos_stack_listen(st[1], 0, 80, 1 + fin_u8(&in) % 6);
            }
            break;
        case 13: { /* a forged segment (or raw bytes) into one side */
            uint8_t f[FMAX], pay[600], opt[40];
            uint32_t n;
            uint8_t kind = fin_u8(&in);
            if (kind & 1) {
                n = (uint32_t)fin_bytes(&in, f, 1 + fin_u8(&in) * 4u);
            } else {
                fz_seg_t g;
                memset(&g, 0, sizeof g);
                g.ipver = (kind & 2) ? 6 : 4;
                memcpy(g.src, g.ipver == 6 ? (side ? IP6_A : IP6_B) : (side ? IP_A : IP_B), 16);
                memcpy(g.dst, g.ipver == 6 ? (side ? IP6_B : IP6_A) : (side ? IP_B : IP_A), 16);
                g.sport = fin_u16(&in);
                g.dport = (kind & 4) ? 80 : fin_u16(&in);
                g.seq = fin_u32(&in);
                g.ack = fin_u32(&in);
                g.flags = fin_u8(&in);
                g.win = fin_u16(&in);
                g.optlen = (uint32_t)fin_bytes(&in, opt, fin_u8(&in) % 41);
                g.opt = opt;
                g.paylen = (uint32_t)fin_bytes(&in, pay, fin_u16(&in) % sizeof pay);
                g.pay = pay;
                n = fz_build(&g, f, sizeof f);
                /* the frame reaches the stack that owns g.dst */
                if (n && side == 0) memcpy(f, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
                for (int k = 0; k < NSOCK; k++) tr[side][k].forged = 1;
            }
            if (n) mos_stack_input(st[side], f, n, now);
            break;
        }
        }
        drain(st[0], &q[0], now);
        drain(st[1], &q[1], now);
        check_stats(st[0]);
        check_stats(st[1]);
    }
    mos_stack_free(st[0]);
    mos_stack_free(st[1]);
    free(q);
    return 0;
}
