/* sha256.c: SHA-256 per FIPS 180-4 §6.2, incremental. */
#include "sha256.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* OpenSSL's SHA-256 is several times faster where the CPU has SHA
 * instructions; Python itself already loads libcrypto for hashlib, so it is
 * there wherever mos runs.  Resolved once, by dlopen, so that building mos
 * needs no OpenSSL headers. */
typedef int (*ossl_init_fn)(void *);
typedef int (*ossl_update_fn)(void *, const void *, size_t);
typedef int (*ossl_final_fn)(unsigned char *, void *);
static ossl_init_fn ossl_init;
static ossl_update_fn ossl_update;
static ossl_final_fn ossl_final;
static int backend_chosen; /* 0 not yet, 1 builtin, 2 libcrypto */

static void choose_backend(void)
{
    backend_chosen = 1;
    const char *want = getenv("MOS_SHA256");
    if (want && strcmp(want, "builtin") == 0) return;
    const char *names[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        ossl_init = (ossl_init_fn)dlsym(h, "SHA256_Init");
        ossl_update = (ossl_update_fn)dlsym(h, "SHA256_Update");
        ossl_final = (ossl_final_fn)dlsym(h, "SHA256_Final");
        if (ossl_init && ossl_update && ossl_final) {
            backend_chosen = 2;
            return;
        }
        dlclose(h);
    }
}

const char *mos_sha256_backend(void)
{
    if (!backend_chosen) choose_backend();
    return backend_chosen == 2 ? "libcrypto" : "builtin";
}

/* FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots
 * of the first 64 primes */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = ror(e, 6) ^ ror(e, 11) ^ ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + K[t] + w[t];
        uint32_t S0 = ror(a, 2) ^ ror(a, 13) ^ ror(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void mos_sha256_init(mos_sha256_t *s)
{
    if (!backend_chosen) choose_backend();
    if (backend_chosen == 2) {
        ossl_init(s->lib);
        return;
    }
    /* §5.3.3: square roots of the first 8 primes */
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->len = 0;
    s->nbuf = 0;
}

void mos_sha256_update(mos_sha256_t *s, const uint8_t *data, size_t len)
{
    if (backend_chosen == 2) {
        ossl_update(s->lib, data, len);
        return;
    }
    s->len += len;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf;
        if (take > len)
            take = len;
        memcpy(s->buf + s->nbuf, data, take);
        s->nbuf += (uint32_t)take;
        data += take;
        len -= take;
        if (s->nbuf < 64)
            return;
        block(s->h, s->buf);
        s->nbuf = 0;
    }
    while (len >= 64) {
        block(s->h, data);
        data += 64;
        len -= 64;
    }
    if (len) {
        memcpy(s->buf, data, len);
        s->nbuf = (uint32_t)len;
    }
}

void mos_sha256_final(mos_sha256_t *s, uint8_t out[32])
{
    if (backend_chosen == 2) {
        ossl_final(out, s->lib);
        return;
    }
    /* §5.1.1: append 0x80, zeros to 56 mod 64, then the bit length big-endian */
    uint64_t bits = s->len * 8;
    uint8_t pad[72];
    size_t n = (s->nbuf < 56 ? 56 : 120) - s->nbuf;
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++)
        pad[n + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t keep = s->len;
    mos_sha256_update(s, pad, n + 8);
    s->len = keep;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}
