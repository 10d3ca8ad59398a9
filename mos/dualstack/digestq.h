/* digestq.h: stream digests hashed on a second core.
 *
 * In digest mode (mos streams) SHA-256 is a third of the work, and the bytes
 * of a capture file stay in memory for the whole run: the engine hands
 * (context, bytes) jobs to a worker thread instead of hashing them itself.
 * One producer (the engine's thread), one consumer (the worker), a ring of
 * jobs done in order, so a context sees its bytes in stream order.  Each
 * context has a count of its jobs not done; whoever reads, updates or frees
 * the context waits for it to reach zero first (mos_digestq_wait).  The
 * worker starts with the first job. */
#ifndef MOS_DIGESTQ_H
#define MOS_DIGESTQ_H
#include <stdint.h>

#include "sha256.h"

typedef struct mos_digestq mos_digestq_t;

/* NULL when the process may run on one core only (the caller hashes). */
mos_digestq_t *mos_digestq_new(void);
/* Waits for every job, stops the worker, frees the queue. */
void mos_digestq_free(mos_digestq_t *q);
/* Hash n bytes at p into s later, in order with s's earlier jobs (pending
 * is s's count); p must stay valid until the job is done.  -1 when the
 * worker cannot start: the caller hashes itself. */
int mos_digestq_push(mos_digestq_t *q, mos_sha256_t *s, uint32_t *pending, const uint8_t *p,
                     uint32_t n);
/* Until the context whose count this is has no job left. */
void mos_digestq_wait(const uint32_t *pending);
/* Until every job is done. */
void mos_digestq_drain(mos_digestq_t *q);

#endif
