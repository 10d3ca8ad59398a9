/* sha256.h: FIPS 180-4 SHA-256, incremental (for per-direction stream digests). */
#ifndef MOS_SHA256_H
#define MOS_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct mos_sha256 {
    union {
        struct {               /* the built-in implementation's state */
            uint32_t h[8];
            uint64_t len;      /* bytes hashed so far */
            uint8_t buf[64];
            uint32_t nbuf;
        };
        uint64_t lib[16];      /* libcrypto's SHA256_CTX (112 bytes) when it is used */
    };
} mos_sha256_t;

void mos_sha256_init(mos_sha256_t *s);
void mos_sha256_update(mos_sha256_t *s, const uint8_t *data, size_t len);
void mos_sha256_final(mos_sha256_t *s, uint8_t out[32]);

/* Which implementation runs: "libcrypto" (OpenSSL, found at run time with
 * dlopen: it uses the CPU's SHA instructions) or "builtin".  MOS_SHA256=builtin
 * in the environment forces the built-in one.  Fixed at the first init. */
const char *mos_sha256_backend(void);

#endif
