/* digestq.c: a single-producer, single-consumer ring of hashing jobs and
 * the thread that does them (digestq.h). */
#define _GNU_SOURCE
#include "digestq.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define QLEN 4096u /* jobs in flight: ~6 MB of 1.5 KB segments ahead of the hasher */

typedef struct job {
    mos_sha256_t *s;
    uint32_t *pending;
    const uint8_t *p;
    uint32_t n;
} job_t;

struct mos_digestq {
    uint32_t head;          /* next job the producer writes (producer's) */
    char pad0[60];
    uint32_t tail;          /* next job the worker takes (worker's) */
    char pad1[60];
    int stop;
    int started;            /* 1: running, -1: could not start */
    pthread_t th;
    job_t jobs[QLEN];
};

static inline void relax(unsigned *spins)
{
    /* busy while work is likely to come (a capture run keeps it coming),
     * then give the core away */
    if (++*spins < 2000) {
        __builtin_ia32_pause();
    } else if (*spins < 2100) {
        sched_yield();
    } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

static void *worker(void *arg)
{
    mos_digestq_t *q = arg;
    unsigned spins = 0;
    uint32_t t = q->tail;
    for (;;) {
        if (t == __atomic_load_n(&q->head, __ATOMIC_ACQUIRE)) {
            if (__atomic_load_n(&q->stop, __ATOMIC_ACQUIRE)) return NULL;
            relax(&spins);
            continue;
        }
        spins = 0;
        job_t *j = &q->jobs[t & (QLEN - 1)];
        mos_sha256_update(j->s, j->p, j->n);
        /* the context's state is published with its count (waiters acquire) */
        __atomic_sub_fetch(j->pending, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&q->tail, ++t, __ATOMIC_RELEASE);
    }
}

mos_digestq_t *mos_digestq_new(void)
{
    /* with one core to run on, the two threads would only take turns (and
     * each wait would spin until the other got the core): hash in place */
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) < 2) return NULL;
    return calloc(1, sizeof(mos_digestq_t));
}

void mos_digestq_drain(mos_digestq_t *q)
{
    unsigned spins = 0;
    if (!q || q->started != 1) return;
    while (__atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) != q->head) relax(&spins);
}

void mos_digestq_free(mos_digestq_t *q)
{
    if (!q) return;
    if (q->started == 1) {
        mos_digestq_drain(q);
        __atomic_store_n(&q->stop, 1, __ATOMIC_RELEASE);
        pthread_join(q->th, NULL);
    }
    free(q);
}

int mos_digestq_push(mos_digestq_t *q, mos_sha256_t *s, uint32_t *pending, const uint8_t *p,
                     uint32_t n)
{
    if (q->started == 0) q->started = pthread_create(&q->th, NULL, worker, q) == 0 ? 1 : -1;
    if (q->started != 1) return -1;
    unsigned spins = 0;
    while (q->head - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= QLEN) relax(&spins);
    job_t *j = &q->jobs[q->head & (QLEN - 1)];
    j->s = s;
    j->pending = pending;
    j->p = p;
    j->n = n;
    __atomic_add_fetch(pending, 1, __ATOMIC_RELAXED); /* before the worker can see the job */
    __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
    return 0;
}

void mos_digestq_wait(const uint32_t *pending)
{
    unsigned spins = 0;
    while (__atomic_load_n(pending, __ATOMIC_ACQUIRE)) relax(&spins);
}
