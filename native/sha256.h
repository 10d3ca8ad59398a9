/* sha256.h: FIPS 180-4 SHA-256, incremental (for per-direction stream digests). */
#ifndef MOS_SHA256_H
#define MOS_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct mos_sha256 {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
    uint32_t nbuf;
} mos_sha256_t;

void mos_sha256_init(mos_sha256_t *s);
void mos_sha256_update(mos_sha256_t *s, const uint8_t *data, size_t len);
void mos_sha256_final(mos_sha256_t *s, uint8_t out[32]);

#endif
