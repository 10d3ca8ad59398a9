/* engine.h: the monitor's per-packet core.
 *
 * A flow table of two passive TCP endpoint models per flow, their receive
 * buffers, and an event list.  Sans-I/O: frames and their timestamps go in,
 * a list of fired events comes out; the engine never reads a clock.
 *
 * One call processes a burst.  Events are recorded only when someone is
 * interested in (event, hook, side), globally or for that flow, so an event
 * nobody asked for costs one bit test.  Flows that end inside a burst stay
 * readable until mos_engine_reap(), which the caller runs after dispatching
 * the burst's events.
 */
#ifndef MOS_ENGINE_H
#define MOS_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "capture.h"
#include "decode.h"
#include "defrag.h"
#include "endpoint.h"
#include "rbuf.h"
#include "seqmap.h"
#include "sha256.h"

enum mos_event_type {
    MOS_EV_PKT_IN = 0, MOS_EV_CONN_START, MOS_EV_STATE_CHANGE, MOS_EV_NEW_DATA,
    MOS_EV_REXMIT, MOS_EV_ERROR, MOS_EV_ORPHAN, MOS_EV_CONN_END, MOS_EV_TIMEOUT,
    MOS_EV_STREAM_NOTE, /* a compiled stream consumer's note (reason: consumer, aux: code) */
    MOS_EV_COUNT
};
enum mos_hook { MOS_HK_SEND = 0, MOS_HK_RECV = 1, MOS_HK_NONE = 2 };
enum mos_side { MOS_CLIENT = 0, MOS_SERVER = 1 };
/* Interest is one bit per (event, hook, side).  Event ids run up to
 * MOS_EV_MAX, not MOS_EV_COUNT: the end host's and the IDS's events come
 * after the monitor's without changing the layout. */
#define MOS_EV_MAX 32
#define MOS_EVBIT_INDEX(ev, hk, side) ((ev) * 6 + (hk) * 2 + (side))
#define MOS_INTEREST_WORDS ((MOS_EV_MAX * 6 + 63) / 64)
typedef struct mos_interest {
    uint64_t w[MOS_INTEREST_WORDS];
} mos_interest_t;
_Static_assert(MOS_INTEREST_WORDS == 3, "mos/dualstack/_cengine.pxd declares 3 words");

/* ERROR reasons: each has a counter (mos_counters_t.errors[reason]) */
enum mos_error_reason {
    MOS_ERR_NONE = 0,
    MOS_ERR_OUT_OF_WINDOW,     /* data beyond the receiver's advertised window: not stored */
    MOS_ERR_OVERRUN,           /* buffer full: unread bytes [a, b) dropped */
    MOS_ERR_BAD_CHECKSUM,      /* IPv4 or TCP checksum wrong (verify mode): packet ignored */
    MOS_ERR_GAP,               /* hole [a, a+b) will never be filled; reader moves past it */
    MOS_ERR_OVERLAP_DIFF,      /* a retransmission carried different bytes (b of them) */
    MOS_ERR_RST_OUT_OF_WINDOW, /* RST whose sequence number is not acceptable: ignored */
    MOS_ERR_NO_ROOM,           /* out-of-order bytes could not be stored (b of them) */
    MOS_ERR_BELOW_BASE,        /* retransmitted bytes older than the buffer holds (b) */
    MOS_ERR_PAWS,              /* TSval a older than TS.Recent b (RFC 7323 5.3): segment ignored */
    MOS_ERR_DATA_AFTER_FIN,    /* b bytes at offset a sequenced after the accepted FIN: not stored */
    MOS_ERR_MEMCAP,            /* b bytes at offset a not stored: reassembly memcap reached */
    MOS_ERR_URGENT,            /* a segment with URG set carries bytes at offset a; b: its urgent
                                * pointer (RFC 9293 3.8.5).  Receivers differ on whether the
                                * urgent byte stays in the stream (SO_OOBINLINE): a rule may
                                * want to know */
    MOS_ERR_COUNT
};

/* why a flow ended (CONN_END reason) */
enum mos_end_reason {
    MOS_END_CLOSE = 1, MOS_END_RST, MOS_END_TIMEOUT, MOS_END_EVICT, MOS_END_SHUTDOWN, MOS_END_REUSE,
    MOS_END_COUNT
};

/* endpoint state names, flags and mos_ep_t (= mos_tcp_ep_t) live in mos/tcp/endpoint.h */

enum {
    MOS_FF_LIVE = 1,       /* in the table */
    MOS_FF_DYING = 2,      /* ended this burst; freed at reap */
    MOS_FF_MIDSTREAM = 4,  /* picked up without a SYN */
    MOS_FF_UNMON = 8,      /* monitoring stopped on both sides: no events */
    MOS_FF_STARTED = 16,   /* CONN_START raised */
    MOS_FF_EMBRYO = 32,    /* handshake not complete: on the embryonic list */
    MOS_FF_NOBUF = 64,     /* << side: no reader at creation, so that side's buffer
                            * limit was set to 0 (restored if a reader comes) */
    MOS_FF_BLOCKED = 256,  /* every later packet is dropped (mos_flow_block) */
};

typedef struct mos_digest {
    mos_sha256_t sha;
    uint64_t hashed_to;    /* stream offset hashed up to */
    uint64_t hashed_bytes;
    uint64_t lost;         /* present bytes that left the buffer before hashing */
    uint32_t pending;      /* hashing jobs of sha not done yet (digestq.h) */
} mos_digest_t;

/* Payload edits that change lengths (in-line): map[side] translates the
 * bytes that side sends.  Allocated on a flow's first edit. */
typedef struct mos_edits {
    mos_seqmap_t map[2];
} mos_edits_t;

struct mos_cons_state;
struct mos_skip;

typedef struct mos_flow {
    uint32_t hnext;        /* hash chain (slot, MOS_NIL ends) */
    uint32_t hash;
    uint32_t lru_prev, lru_next;
    uint32_t emb_prev, emb_next; /* embryonic list (MOS_FF_EMBRYO), oldest first */
    uint32_t gen;          /* bumped when the slot is freed */
    uint16_t flags;
    uint8_t ipver;
    uint8_t end_reason;
    uint8_t caddr[16];     /* client address (IPv4: first 4 bytes) */
    uint8_t saddr[16];
    uint16_t cport, sport;
    uint32_t nd_stamp[2];  /* burst serial of the last NEW_DATA per side */
    uint16_t iface[2];     /* port each side's packets arrive on (the port facing it) */
    uint32_t wire_pkts[2]; /* frames each side sent, as seen on the wire (Suricata's pkts_to*) */
    uint64_t wire_bytes[2]; /* their wire lengths (link header included) */
    uint64_t id;           /* creation order, from 1 */
    mos_interest_t *interest; /* per-flow event bits (OR-ed with the global ones), NULL: none */
    uint64_t first_ts, last_ts;
    uint64_t lru_ts;       /* last_ts when last moved to the LRU tail */
    mos_digest_t *digest;  /* [2] in digest mode once the flow has stream bytes, else NULL */
    mos_edits_t *edits;    /* NULL until a handler changes a payload's length */
    struct mos_cons_state *cons; /* compiled stream consumers' state, from their first byte */
    struct mos_skip *skip; /* holes acknowledged past, not yet declared gaps (engine.c) */
    mos_ep_t ep[2];        /* [MOS_CLIENT], [MOS_SERVER] */
} mos_flow_t;

#define MOS_NIL 0xffffffffu
#define MOS_NOPKT 0xffffffffu

typedef struct mos_event {
    uint8_t type, hook, side, reason; /* reason: error/end reason; new state for STATE_CHANGE */
    uint32_t flow;                    /* slot, MOS_NIL for ORPHAN */
    uint32_t pkt;                     /* index in the burst, MOS_NOPKT if none */
    uint32_t aux;                     /* old state for STATE_CHANGE */
    uint64_t a, b;                    /* offsets / lengths, per reason */
} mos_event_t;

/* checksum policy; AUTO accepts and counts the first MOS_CSUM_SAMPLE TCP
 * packets, then verifies from there on unless more than 1 in 10 of them
 * failed (offloaded checksums: Suricata's checksum-validation auto idea).
 * On a capture file the runtime takes the decision ahead on its first
 * packets (mos_pcap_checksum_verdict), so no packet is accepted unchecked. */
enum { MOS_CSUM_IGNORE = 0, MOS_CSUM_VERIFY = 1, MOS_CSUM_AUTO = 2 };
#define MOS_CSUM_SAMPLE 1000

typedef struct mos_config {
    uint32_t buffer_size[2];   /* receive buffer per side, bytes (0 = keep no bytes) */
    uint8_t overlap[2];        /* MOS_OVERLAP_* per side */
    uint8_t midstream;         /* create flows from mid-stream packets */
    uint8_t checksum;          /* MOS_CSUM_* */
    uint8_t digest;            /* keep a SHA-256 of each direction (mos streams) */
    uint8_t keep_read;         /* keep bytes every monitor read until the buffer is full */
    uint8_t _pad[2];
    uint32_t max_flows;        /* live flows before LRU eviction */
    uint32_t max_embryonic;    /* live flows with the handshake not complete (0: max_flows) */
    uint64_t tcp_timeout_ns;   /* idle timeout */
    uint64_t defrag_mem;       /* bytes for IP fragment reassembly */
    uint64_t defrag_timeout_ns;
    uint64_t reassembly_memcap; /* bytes all receive buffers may hold together (0: no cap) */
} mos_config_t;

typedef struct mos_counters {
    uint64_t frames, bytes;        /* frames seen, their wire bytes */
    uint64_t tcp, non_tcp;
    uint64_t truncated, malformed, unsupported;
    uint64_t bad_checksum;         /* dropped for a bad checksum */
    uint64_t fragments;            /* IP fragments fed to reassembly */
    uint64_t orphans;              /* TCP packets of no tracked flow */
    uint64_t flows_created, flows_ended, flows_live;
    uint64_t ended[MOS_END_COUNT];
    uint64_t errors[MOS_ERR_COUNT];
    uint64_t events;               /* events recorded */
    uint64_t rexmit;               /* retransmitted segments */
    uint64_t payload_bytes;        /* TCP payload bytes of tracked flows */
    uint64_t ooo_segments;         /* segments stored out of order */
    uint64_t snapped;              /* TCP segments whose payload was cut by the capture */
    uint64_t rewritten;            /* frames sent rewritten for payload edits */
    uint64_t rewrite_failed;       /* frames of edited flows that could not be rewritten (dropped) */
    uint64_t split;                /* extra frames sent: grown segments cut to the MTU / MSS */
    uint64_t nomem;                /* events or flows dropped because memory ran out */
    uint64_t embryonic;            /* live flows whose handshake is not complete */
    uint64_t evicted_embryonic;    /* of ended[MOS_END_EVICT]: embryonic flows recycled */
    uint64_t blocked;              /* packets of blocked flows dropped (mos_flow_block) */
    uint64_t ip_len_over_wire;     /* of malformed: the IP length claims more than the frame
                                    * carried on the wire (not cut by the capture's snaplen) */
} mos_counters_t;

typedef struct mos_engine mos_engine_t;

mos_engine_t *mos_engine_new(const mos_config_t *cfg);
void mos_engine_free(mos_engine_t *e);

/* Global interest bits (MOS_EVBIT_INDEX). */
void mos_engine_set_interest(mos_engine_t *e, const mos_interest_t *m);
/* The sides some monitor reads (bit 1 << side; a flow's own CONN_NEW_DATA
 * interest reads that side of that flow too).  In-order bytes of a side
 * nobody reads are not kept, and a flow created while nobody reads a side
 * (and no digest needs its out-of-order bytes) gets buffer limit 0 there;
 * a reader coming later restores the configured size on live flows. */
void mos_engine_set_reads(mos_engine_t *e, int mask);
/* 1 if `side` of f keeps its in-order bytes for someone: a reader (above)
 * or the LAST overlap policy. */
int mos_flow_reads(const mos_engine_t *e, const mos_flow_t *f, int side);
/* One flow's own interest (per-flow handlers); m NULL or all zero: none.
 * Returns -1 when out of memory (the flow keeps what it had). */
int mos_flow_set_interest(mos_engine_t *e, mos_flow_t *f, const mos_interest_t *m);
void mos_engine_set_checksum(mos_engine_t *e, int mode);
/* Block a flow (in-line): its packets from the next one on are dropped
 * without reaching its endpoint models (counters.blocked); the current one
 * is the caller's to drop.  The flow ends by idle timeout. */
void mos_flow_block(mos_engine_t *e, mos_flow_t *f);

/* Process frames[from..n) of a burst, frames[0..from) having been processed
 * by earlier calls (from 0 starts a burst: the per-burst state is reset).
 * Stops
 *   - after the first frame whose processing recorded an event (someone
 *     handles it: handlers then see the flow as it is right after that
 *     packet, and the next call goes on from there),
 *   - before a frame whose arrival expired idle flows with events (they
 *     come first, in time order),
 *   - before the first frame later than stop_ts (a timer is due).
 * Returns the index reached.  Events land in mos_engine_events(); decoded
 * packets, verdicts and edits of the burst stay valid, by index in frames,
 * until the next burst starts. */
/* The frames given to mos_engine_process stay where they are until this
 * is called with 0 (a capture file in memory): in digest mode, in-order
 * bytes are then hashed from them on a second core (digestq.h).  Turning
 * it off waits for every hash and ends that thread. */
void mos_engine_set_stable_frames(mos_engine_t *e, int on);
/* Until both digests of f are up to date (before reading them). */
void mos_flow_digest_wait(const mos_flow_t *f);

/* Objects of the caller's, by flow slot (n of them; NULL entries allowed),
 * that mos_engine_process asks for from memory a few packets before the
 * packet of their flow: the pointers are only prefetched, never read
 * through.  Valid until the next call; NULL clears. */
void mos_engine_set_views(mos_engine_t *e, void *const *views, uint32_t n);
int mos_engine_process(mos_engine_t *e, const mos_frame_t *frames, int from, int n,
                       uint64_t stop_ts);
#define MOS_BURST_MAX 256 /* frames of one burst (process takes at most these) */

/* Advance time with no packet: expire idle flows (TIMEOUT, CONN_END). */
void mos_engine_advance(mos_engine_t *e, uint64_t now_ns);

/* The earliest time at which mos_engine_advance has work: the least recently
 * active flow's idle timeout, or the oldest IP fragment's (UINT64_MAX: none).
 * The runtime calls advance then instead of on a fixed tick. */
uint64_t mos_engine_next_deadline(const mos_engine_t *e);

/* End every live flow (reason MOS_END_SHUTDOWN), e.g. at the end of a capture. */
void mos_engine_end_all(mos_engine_t *e, int reason);
/* The same for the max least recently active flows; returns how many ended.
 * Ending a large table in slices bounds the events and dying flows held at
 * once (the caller dispatches and reaps between slices). */
uint32_t mos_engine_end_some(mos_engine_t *e, int reason, uint32_t max);

/* End one flow now (events are recorded as for any end). */
void mos_engine_end_flow(mos_engine_t *e, uint32_t slot, int reason);

const mos_event_t *mos_engine_events(const mos_engine_t *e, uint32_t *n);
void mos_engine_clear_events(mos_engine_t *e);

/* Free the flows that ended since the last reap (mos_engine_dying lists
 * them until then); returns the count freed. */
uint32_t mos_engine_reap(mos_engine_t *e);
const uint32_t *mos_engine_dying(const mos_engine_t *e, uint32_t *n); /* slots awaiting reap */

/* Slot to flow (NULL when the slot is free or gen differs). */
mos_flow_t *mos_engine_flow(mos_engine_t *e, uint32_t slot, uint32_t gen);
mos_flow_t *mos_engine_flow_any(mos_engine_t *e, uint32_t slot);

const mos_pkt_t *mos_engine_pkt(const mos_engine_t *e, uint32_t i);
/* Per-frame verdicts of the last process call (MOS_VERDICT_*), set by handlers. */
uint8_t *mos_engine_verdicts(mos_engine_t *e);
enum { MOS_VERDICT_FORWARD = 0, MOS_VERDICT_DROP = 1 };
const mos_frame_t *mos_engine_frame(const mos_engine_t *e, uint32_t i);
const mos_counters_t *mos_engine_counters(const mos_engine_t *e);
const mos_defrag_stats_t *mos_engine_defrag_stats(const mos_engine_t *e);
uint64_t mos_engine_now(const mos_engine_t *e);
uint32_t mos_engine_slots(const mos_engine_t *e);     /* slots allocated so far */
uint64_t mos_engine_memory(const mos_engine_t *e);
/* The receive buffers' block pool: memcap, bytes in use, peak, refusals. */
const mos_rbuf_pool_t *mos_engine_pool(const mos_engine_t *e);    /* bytes held by the table (not buffers) */

/* ---- in-line payload edits (insert, chomp, replace) ----
 * Replace del bytes at payload offset off of packet i (of the last process
 * call) by ins[0..ins_len).  Only bytes the sender has not sent before may
 * change length (a retransmitted range may have reached the receiver as it
 * was).  The flow's later packets, both ways, are translated when they are
 * sent (mos_engine_tx_frames); the monitor's own view keeps the sender's
 * numbers and bytes.  An edit of bytes the receiver has acknowledged does
 * nothing (that copy is a duplicate it drops), and so does repeating an
 * edit.  Returns 0, or -1 with a reason in err. */
int mos_engine_edit(mos_engine_t *e, uint32_t i, uint32_t off, uint32_t del, const uint8_t *ins,
                    uint32_t ins_len, char *err, size_t errlen);
/* The frames to send for packet i, whose bytes are data[0..len) (the frame
 * or a handler's modified copy): 0 to send data as it is; -1 when it cannot
 * be rewritten (drop it: counted in rewrite_failed); else n >= 1 frames in
 * out/out_len (at most max), valid until the next process call: the
 * rewritten segment, cut in pieces when an edit grew it past the IP MTU
 * (mos_engine_set_mtu, default 1500) or the receiver's MSS. */
int mos_engine_tx_frames(mos_engine_t *e, uint32_t i, const uint8_t *data, uint32_t len,
                         const uint8_t **out, uint32_t *out_len, int max);
void mos_engine_set_mtu(mos_engine_t *e, uint32_t ip_mtu);
uint32_t mos_engine_mtu(const mos_engine_t *e);
/* Flows with edits now (0: tx_frames has nothing to do). */
uint32_t mos_engine_edited_flows(const mos_engine_t *e);
/* Stream offset up to which `side` has acknowledged the bytes it received
 * (0 while unknown): a receiver never takes those bytes again, so they are
 * final whatever the overlap policy. */
uint64_t mos_flow_acked(const mos_flow_t *f, int side);
/* A sequence number `side` sends, as the other side sees it. */
uint32_t mos_flow_wire_seq(const mos_flow_t *f, int side, uint32_t seq);

/* Per-side run-time settings. */
void mos_flow_set_buffer(mos_engine_t *e, mos_flow_t *f, int side, uint32_t size);
void mos_flow_stop_side(mos_engine_t *e, mos_flow_t *f, int side);
/* Every monitor has read `side`'s stream up to off: unless keep_read, those
 * bytes (once acknowledged) are freed when the flow's next packet arrives. */
void mos_flow_consumed(mos_engine_t *e, mos_flow_t *f, int side, uint64_t off);

/* Stream bytes present in f->ep[side].rbuf starting at off, stopping at a
 * gap/hole: see mos_rbuf_copy. */


/* ---------------------------------------------------------------- consumers
 *
 * A compiled stream consumer is C code that sees the in-order bytes each
 * side receives inside the core, as they become readable, with no Python
 * call: a multi-pattern scanner, a protocol parser, a hash.  It tells
 * handlers what it found through STREAM_NOTE events (mos_cstream_note),
 * which carry the packet that made the bytes readable, like CONN_NEW_DATA.
 *
 * Every byte of a side's stream reaches each consumer of that side once, in
 * order, from the first byte that becomes readable after the consumer was
 * added; a gap (bytes that will never come) is given as data NULL with its
 * length, so offsets stay continuous.  A side a consumer reads keeps its
 * buffer (out-of-order bytes wait for their holes), and the bytes a packet
 * made readable stay until the next ones if a note was raised on them (its
 * handlers may ppeek them); other in-order bytes are not copied at all,
 * unless a Python reader holds them or a consumer asked for `lookback`
 * bytes behind the in-order frontier (kept whether or not a note comes). */
#define MOS_MAX_CONSUMERS 4

typedef struct mos_cstream {   /* the stream a callback works on */
    mos_engine_t *e;
    mos_flow_t *f;
    uint32_t slot;             /* the flow's slot */
    uint32_t pkt;              /* the packet that made the bytes readable (MOS_NOPKT: none) */
    int side;                  /* the receiving side (its stream is what the peer sent) */
    int id;                    /* the consumer's number */
    void **state;              /* the consumer's slot for this stream: NULL until it sets one */
} mos_cstream_t;

typedef struct mos_consumer {
    /* Bytes [off, off + len) of the stream, in order, each once; data NULL:
     * a gap of len bytes.  May set *cs->state and raise notes. */
    void (*data)(void *ctx, mos_cstream_t *cs, uint64_t off, const uint8_t *data, uint32_t len);
    /* The stream ends (its flow ends, or the engine is freed): called once
     * for a stream whose *cs->state is set, which it must free.  May raise
     * notes (pkt is MOS_NOPKT then). */
    void (*end)(void *ctx, mos_cstream_t *cs);
    void *ctx;
    uint8_t sides;             /* 1 << side: the receiving sides it reads */
    uint32_t lookback;         /* bytes behind the in-order frontier kept for handlers */
    /* Optional (NULL: none): the payload of each packet a side it reads
     * receives, as captured, once, in arrival order (retransmissions and
     * out-of-order packets too), just before that packet's PKT_IN at RECV;
     * cs->pkt is the packet and cs->state the stream's slot, as for data.
     * For per-packet work (a packet-payload prefilter) with no Python call. */
    void (*packet)(void *ctx, mos_cstream_t *cs, const uint8_t *payload, uint32_t len);
} mos_consumer_t;

/* Add a consumer (copied); returns its number, or -1 when MOS_MAX_CONSUMERS
 * are in use or it has no data callback.  Live flows keep or regain their
 * buffers on its sides and feed it from their next readable byte. */
int mos_engine_add_consumer(mos_engine_t *e, const mos_consumer_t *c);
/* Remove consumer `id`: its live streams end (end callback) first. */
void mos_engine_remove_consumer(mos_engine_t *e, int id);
/* Raise a STREAM_NOTE on the stream (recorded only if someone handles it):
 * code, a and b are the consumer's to define (e.g. pattern id, end offset). */
void mos_cstream_note(mos_cstream_t *cs, uint32_t code, uint64_t a, uint64_t b);
/* Stream offset each side's consumers were fed up to (-1: none yet). */
int64_t mos_flow_consumed_to(const mos_flow_t *f, int side);
/* The consumer's state slot for the other stream of the same flow: a
 * consumer that reads both sides may keep one state for the pair (a
 * protocol parser); its end callback comes once per slot that is set. */
void **mos_cstream_peer_state(mos_cstream_t *cs);
/* Consumer `id`'s state for `side` of f (NULL: none set).  For a handler's
 * view of what a consumer keeps (through its own compiled module). */
void *mos_flow_consumer_state(const mos_flow_t *f, int id, int side);

#endif
