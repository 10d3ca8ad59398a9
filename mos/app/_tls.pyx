# cython: language_level=3
"""TLS record and handshake framing as a compiled stream consumer.

Per direction of each flow this follows the record layer (RFC 8446 §5.1,
RFC 5246 §6.2): 5-byte headers, bodies skipped without a copy, handshake
records (content type 22) reassembled into handshake messages (RFC 8446
§4: type, 24-bit length) until that direction sends ChangeCipherSpec,
after which its handshake records are encrypted.  The three messages apps
and the IDS read (ClientHello, ServerHello, Certificate) are kept whole and
announced with a STREAM_NOTE (code MAGIC | kind); their fields are parsed
in Python by mos.app.tls only when a handler asks, once per message.

No Python runs per packet.  A direction whose first bytes are not a TLS
handshake record is given up at once and quietly (most flows are not TLS;
counted in stats()["not_tls"]).  A direction that started as TLS and then
breaks (a bad record header, a gap the record layer cannot skip) stops
with a TLS_ANOMALY note.  Two preludes are understood: an SSLv2-format
ClientHello (a 2-byte header with the high bit set, RFC 6101 appendix E,
answered in SSLv3/TLS records), and an HTTP CONNECT exchange before the
handshake (TLS through a proxy).

"Handshake done", as far as a passive observer can tell, is the server's
ServerHelloDone (TLS 1.2 and older), or the first ChangeCipherSpec or
application-data record after the ServerHello (resumption, TLS 1.3): the
moment Suricata writes its EVE tls record."""

from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy, memmove, memset

from mos.dualstack._cengine cimport (mos_consumer_t, mos_cstream_t, mos_cstream_note,
                                     mos_cstream_peer_state)

#: note codes: MAGIC | kind ("tl")
MAGIC = 0x746C0000
cdef enum:
    K_CLIENT_HELLO = 1
    K_SERVER_HELLO = 2
    K_CERTIFICATE = 3
    K_HANDSHAKE_DONE = 4
    K_ANOMALY = 5       # a = direction (1 client to server), b = A_* reason
    M = 0x746C0000

KIND = {"client_hello": K_CLIENT_HELLO, "server_hello": K_SERVER_HELLO,
        "certificate": K_CERTIFICATE, "handshake_done": K_HANDSHAKE_DONE,
        "anomaly": K_ANOMALY}

cdef enum:
    A_NOT_TLS = 1       # first bytes are not a TLS handshake: quiet, no note
    A_BAD_RECORD = 2    # a record header that is not TLS (type, version, length)
    A_GAP = 3           # bytes missing where records cannot be skipped
    A_OVERSIZED = 4     # a handshake message longer than HS_MAX: skipped, parsing goes on
    A_BAD_PRELUDE = 5   # the CONNECT exchange did not succeed or its headers ran too long

ANOMALIES = {A_NOT_TLS: "not_tls", A_BAD_RECORD: "bad_record", A_GAP: "gap",
             A_OVERSIZED: "oversized_handshake", A_BAD_PRELUDE: "bad_prelude"}

DEF CLIENT = 1          # the client's bytes are received by the server: mos Side.SERVER == 1
DEF HS_MAX = 262144     # longest handshake message kept (certificate chains run to ~64 KiB)
DEF REC_MAX = 18432     # RFC 8446 §5.2: 2^14 + 2048
DEF PRELUDE_MAX = 16384 # CONNECT request or response headers
DEF GRAVES = 256        # ended flows' states kept for the handlers of their last notes
DEF N_MSG = 3           # kept messages: ClientHello, ServerHello, Certificate

cdef enum:
    P_NONE = 0
    P_HTTP = 1          # inside CONNECT headers, looking for CRLF CRLF
    P_DONE = 2


cdef struct tdir:
    uint8_t hdr[5]
    uint8_t nhdr            # header bytes collected
    uint8_t rtype           # content type of the record being read
    uint32_t left           # body bytes of that record still to come
    uint8_t *hs             # handshake bytes not yet a whole message
    uint32_t nhs, caphs
    uint32_t skip           # bytes of an oversized handshake message still to skip
    uint8_t dead            # 0, or the A_* reason this direction stopped
    uint8_t started         # the first record (or prelude) was recognised
    uint8_t encrypted       # this direction sent ChangeCipherSpec
    uint8_t prelude         # P_*
    uint8_t crlf            # CRLF CRLF matched so far in a prelude
    uint32_t nprelude
    uint8_t status[12]      # the start of a CONNECT response (for its status code)
    uint8_t nstatus
    uint64_t records


cdef struct tflow:
    tdir d[2]               # [0] server to client, [1] client to server
    uint8_t *msg[N_MSG]     # the last ClientHello, ServerHello, Certificate (bodies)
    uint32_t nmsg[N_MSG]
    uint8_t server_hello    # a ServerHello was seen
    uint8_t done            # handshake done was announced
    uint8_t connect         # the client opened with CONNECT
    mos_cstream_t *cs       # the stream being fed (during a call only)
    tctx *ctx


cdef struct grave:
    uint64_t flow_id
    tflow *tf


cdef struct rnote:
    uint32_t kind
    int direction
    uint64_t a, b


DEF RECORDED = 1024     # notes one Framer.feed call keeps


cdef struct tctx:
    rnote *recorded         # Framer only: notes go here instead of to the engine
    size_t nrecorded
    grave graves[GRAVES]
    size_t ngraves
    uint64_t flows, tls_flows, not_tls, client_hellos, server_hellos, certificates
    uint64_t anomalies, records, oversized


cdef inline void _note(tflow *tf, int direction, uint32_t kind, uint64_t a, uint64_t b) noexcept nogil:
    cdef mos_cstream_t cs
    cdef rnote *r
    if tf.ctx.recorded != NULL:
        if tf.ctx.nrecorded < RECORDED:
            r = &tf.ctx.recorded[tf.ctx.nrecorded]
            r.kind, r.direction, r.a, r.b = kind, direction, a, b
            tf.ctx.nrecorded += 1
        return
    if tf.cs == NULL:
        return
    cs = tf.cs[0]
    cs.side = direction
    mos_cstream_note(&cs, M | kind, a, b)


cdef void _stop(tflow *tf, int direction, int why) noexcept nogil:
    cdef tdir *t = &tf.d[direction]
    if t.dead:
        return
    t.dead = why
    t.nhs = 0
    if why == A_NOT_TLS:
        tf.ctx.not_tls += 1
        return
    tf.ctx.anomalies += 1
    _note(tf, direction, K_ANOMALY, direction, why)


cdef void _done(tflow *tf, int direction) noexcept nogil:
    if not tf.done:
        tf.done = 1
        _note(tf, direction, K_HANDSHAKE_DONE, 0, 0)


cdef void _keep(tflow *tf, int which, const uint8_t *body, uint32_t n) noexcept nogil:
    cdef uint8_t *p = <uint8_t *>realloc(tf.msg[which], n if n else 1)
    if p == NULL:
        return
    memcpy(p, body, n)
    tf.msg[which] = p
    tf.nmsg[which] = n


cdef void _message(tflow *tf, int direction, uint8_t mtype, const uint8_t *body,
                   uint32_t n) noexcept nogil:
    """A whole handshake message of `direction` (RFC 8446 §4 types)."""
    if direction == CLIENT:
        if mtype == 1:                      # ClientHello (a second one after HelloRetryRequest too)
            _keep(tf, 0, body, n)
            tf.ctx.client_hellos += 1
            _note(tf, CLIENT, K_CLIENT_HELLO, 0, n)
        return
    if mtype == 2:                          # ServerHello
        _keep(tf, 1, body, n)
        tf.server_hello = 1
        tf.ctx.server_hellos += 1
        _note(tf, 0, K_SERVER_HELLO, 0, n)
    elif mtype == 11:                       # Certificate (in clear: TLS 1.2 and older)
        _keep(tf, 2, body, n)
        tf.ctx.certificates += 1
        _note(tf, 0, K_CERTIFICATE, 0, n)
    elif mtype == 14:                       # ServerHelloDone
        _done(tf, 0)


cdef void _handshake(tflow *tf, int direction, const uint8_t *data, uint32_t n) noexcept nogil:
    """Handshake record bytes: reassemble messages across records."""
    cdef tdir *t = &tf.d[direction]
    cdef uint32_t k, mlen, cap, used
    cdef uint8_t *p
    if t.skip:
        k = t.skip if t.skip < n else n
        t.skip -= k
        data += k
        n -= k
    if n == 0:
        return
    # messages wholly inside this chunk go straight from it
    if t.nhs == 0:
        while n >= 4:
            mlen = (<uint32_t>data[1] << 16) | (<uint32_t>data[2] << 8) | data[3]
            if mlen > HS_MAX:
                tf.ctx.oversized += 1
                tf.ctx.anomalies += 1
                _note(tf, direction, K_ANOMALY, direction, A_OVERSIZED)
                used = n - 4 if n - 4 < mlen else mlen
                t.skip = mlen - used
                data += 4 + used
                n -= 4 + used
                continue
            if n < 4 + mlen:
                break
            _message(tf, direction, data[0], data + 4, mlen)
            data += 4 + mlen
            n -= 4 + mlen
            if t.dead:
                return
        if n == 0:
            return
    if t.nhs + n > t.caphs:
        cap = t.caphs * 2 if t.caphs else 4096
        while cap < t.nhs + n:
            cap *= 2
        p = <uint8_t *>realloc(t.hs, cap)
        if p == NULL:
            _stop(tf, direction, A_OVERSIZED)
            return
        t.hs = p
        t.caphs = cap
    memcpy(t.hs + t.nhs, data, n)
    t.nhs += n
    k = 0
    while t.nhs - k >= 4:
        p = t.hs + k
        mlen = (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
        if mlen > HS_MAX:
            tf.ctx.oversized += 1
            tf.ctx.anomalies += 1
            _note(tf, direction, K_ANOMALY, direction, A_OVERSIZED)
            used = t.nhs - k - 4 if t.nhs - k - 4 < mlen else mlen
            t.skip = mlen - used
            k += 4 + used
            continue
        if t.nhs - k < 4 + mlen:
            break
        _message(tf, direction, p[0], p + 4, mlen)
        k += 4 + mlen
    if k:
        memmove(t.hs, t.hs + k, t.nhs - k)
        t.nhs -= k


cdef uint32_t _prelude(tflow *tf, int direction, const uint8_t *data, uint32_t n) noexcept nogil:
    """Skip the headers of a CONNECT request or its response; returns the
    bytes used.  A response that is not 2xx stops both directions."""
    cdef tdir *t = &tf.d[direction]
    cdef uint32_t i = 0
    cdef uint8_t c
    while i < n:
        c = data[i]
        if t.nstatus < 12:
            t.status[t.nstatus] = c
            t.nstatus += 1
        i += 1
        if (c == 13 and t.crlf % 2 == 0) or (c == 10 and t.crlf % 2 == 1):
            t.crlf += 1
        elif c == 10 and t.crlf == 0:
            t.crlf = 2                      # a bare LF ends a line too
        else:
            t.crlf = 0
        if t.crlf == 4 or (c == 10 and t.crlf == 2 and i >= 2 and data[i - 2] == 10):
            t.prelude = P_DONE
            t.crlf = 0
            if direction == 0 and not (t.nstatus >= 10 and t.status[9] == 50):   # "2xx"
                _stop(tf, 0, A_BAD_PRELUDE)
                _stop(tf, CLIENT, A_BAD_PRELUDE)
            return i
        t.nprelude += 1
        if t.nprelude > PRELUDE_MAX:
            _stop(tf, direction, A_BAD_PRELUDE)
            return n
    return n


cdef int _header(tflow *tf, int direction) noexcept nogil:
    """Check a record header just completed; 0 if the direction stopped."""
    cdef tdir *t = &tf.d[direction]
    cdef uint8_t *h = t.hdr
    cdef uint32_t length
    if not t.started and h[0] & 0x80 and direction == CLIENT and h[2] == 1:
        # SSLv2-format ClientHello (2-byte header; RFC 6101 appendix E): its
        # body after the 3 bytes already read is skipped; TLS records follow
        length = ((<uint32_t>(h[0] & 0x7F)) << 8) | h[1]
        if length < 3:
            _stop(tf, direction, A_NOT_TLS)
            return 0
        t.started = 1
        t.rtype = 0
        t.left = length - 3
        t.records += 1
        tf.ctx.tls_flows += 1
        return 1
    length = (<uint32_t>h[3] << 8) | h[4]
    if h[1] != 3 or h[2] > 4 or h[0] < 20 or h[0] > 24 or length > REC_MAX or \
            (not t.started and h[0] != 22):
        _stop(tf, direction, A_BAD_RECORD if t.started else A_NOT_TLS)
        return 0
    if not t.started:
        t.started = 1
        if direction == CLIENT:
            tf.ctx.tls_flows += 1
    t.rtype = h[0]
    t.left = length
    t.records += 1
    tf.ctx.records += 1
    if h[0] == 20:                          # ChangeCipherSpec: handshake records encrypted from now
        t.encrypted = 1
        t.nhs = 0
        t.skip = 0
        if tf.server_hello:
            _done(tf, direction)
    elif h[0] == 23 and tf.server_hello:
        _done(tf, direction)
    return 1


cdef void _feed(tflow *tf, int direction, const uint8_t *data, uint32_t n) noexcept nogil:
    cdef tdir *t = &tf.d[direction]
    cdef uint32_t k
    if data == NULL:
        # missing bytes: fine inside a record that is skipped anyway
        if t.left >= n and (t.rtype != 22 or t.encrypted) and t.nhdr == 0 and \
                t.prelude != P_HTTP and t.started:
            t.left -= n
        else:
            _stop(tf, direction, A_GAP if t.started else A_NOT_TLS)
        return
    if not t.started and t.prelude == P_NONE and t.nhdr == 0 and n > 0:
        if direction == CLIENT and n >= 8 and memcmp(data, b"CONNECT ", 8) == 0:
            tf.connect = 1
            t.prelude = P_HTTP
        elif direction == 0 and tf.connect and n >= 5 and memcmp(data, b"HTTP/", 5) == 0:
            t.prelude = P_HTTP
    while n > 0 and not t.dead:
        if t.prelude == P_HTTP:
            k = _prelude(tf, direction, data, n)
            data += k
            n -= k
            continue
        if t.left == 0:
            k = 5 - t.nhdr
            if k > n:
                k = n
            memcpy(t.hdr + t.nhdr, data, k)
            t.nhdr += k
            data += k
            n -= k
            if t.nhdr < 5:
                return
            t.nhdr = 0
            if not _header(tf, direction):
                return
            continue
        k = t.left if t.left < n else n
        if t.rtype == 22 and not t.encrypted:
            _handshake(tf, direction, data, k)
        t.left -= k
        data += k
        n -= k


cdef tflow *_flow_state(tctx *ctx, mos_cstream_t *cs) noexcept nogil:
    cdef void **slot = cs.state if cs.side == CLIENT else mos_cstream_peer_state(cs)
    cdef tflow *tf = <tflow *>slot[0]
    if tf != NULL:
        return tf
    tf = <tflow *>calloc(1, sizeof(tflow))
    if tf == NULL:
        return NULL
    tf.ctx = ctx
    ctx.flows += 1
    slot[0] = tf
    return tf


cdef void _data(void *vctx, mos_cstream_t *cs, uint64_t off, const uint8_t *data,
                uint32_t length) noexcept nogil:
    cdef tctx *ctx = <tctx *>vctx
    cdef tflow *tf
    cdef int direction = CLIENT if cs.side == CLIENT else 0
    tf = _flow_state(ctx, cs)
    if tf == NULL or tf.d[direction].dead:
        return
    tf.cs = cs
    _feed(tf, direction, data, length)
    tf.cs = NULL


cdef void _free_flow(tflow *tf) noexcept nogil:
    cdef int k
    for k in range(2):
        free(tf.d[k].hs)
    for k in range(N_MSG):
        free(tf.msg[k])
    free(tf)


cdef void _end(void *vctx, mos_cstream_t *cs) noexcept nogil:
    cdef tctx *ctx = <tctx *>vctx
    cdef tflow *tf = <tflow *>cs.state[0]
    cdef grave *g
    if tf == NULL:
        return
    cs.state[0] = NULL
    if not tf.d[CLIENT].started:
        _free_flow(tf)                      # never TLS: nobody will ask
        return
    g = &ctx.graves[ctx.ngraves % GRAVES]
    if g.tf != NULL:
        _free_flow(g.tf)
    g.tf = tf
    g.flow_id = cs.f.id
    ctx.ngraves += 1


cdef class TlsParser:
    """The consumer: ``engine.add_consumer(TlsParser(), Side.BOTH)``."""
    cdef mos_consumer_t c
    cdef tctx ctx
    cdef readonly object mos_consumer

    def __cinit__(self):
        memset(&self.ctx, 0, sizeof(tctx))
        memset(&self.c, 0, sizeof(mos_consumer_t))
        self.c.data = _data
        self.c.end = _end
        self.c.ctx = &self.ctx
        self.mos_consumer = PyCapsule_New(&self.c, b"mos.consumer", NULL)

    def __dealloc__(self):
        cdef int i
        for i in range(GRAVES):
            if self.ctx.graves[i].tf != NULL:
                _free_flow(self.ctx.graves[i].tf)
                self.ctx.graves[i].tf = NULL

    def ended(self, uint64_t flow_id):
        """The state of an ended flow still kept (a "mos.cstate" capsule), or None."""
        cdef size_t i
        for i in range(GRAVES):
            if self.ctx.graves[i].tf != NULL and self.ctx.graves[i].flow_id == flow_id:
                return PyCapsule_New(self.ctx.graves[i].tf, b"mos.cstate", NULL)
        return None

    def stats(self):
        return {"flows": self.ctx.flows, "tls_flows": self.ctx.tls_flows,
                "not_tls": self.ctx.not_tls, "records": self.ctx.records,
                "client_hellos": self.ctx.client_hellos,
                "server_hellos": self.ctx.server_hellos,
                "certificates": self.ctx.certificates, "anomalies": self.ctx.anomalies,
                "oversized": self.ctx.oversized}


# ---------------------------------------------------------------- handler side

cdef tflow *_tf(capsule) except NULL:
    if not PyCapsule_IsValid(capsule, b"mos.cstate"):
        raise TypeError("not a consumer state capsule")
    return <tflow *>PyCapsule_GetPointer(capsule, b"mos.cstate")


def message(capsule, int which):
    """The body of the kept ClientHello (0), ServerHello (1) or Certificate
    (2) message, or None."""
    cdef tflow *tf = _tf(capsule)
    if which < 0 or which >= N_MSG or tf.msg[which] == NULL:
        return None
    return (<char *>tf.msg[which])[:tf.nmsg[which]]


def flow_state(capsule):
    """Per direction (client, server): (started, encrypted, records, stopped
    reason or None), and whether the handshake is done."""
    cdef tflow *tf = _tf(capsule)
    cdef tdir *c = &tf.d[CLIENT]
    cdef tdir *s = &tf.d[0]
    return {"client": (bool(c.started), bool(c.encrypted), c.records, ANOMALIES.get(c.dead)),
            "server": (bool(s.started), bool(s.encrypted), s.records, ANOMALIES.get(s.dead)),
            "handshake_done": bool(tf.done), "connect": bool(tf.connect)}


# ---------------------------------------------------------------- tests and fuzzing

cdef class Framer:
    """The record layer without an engine, for tests and fuzzing:
    ``feed(direction, data)`` (direction 1: client to server; data None for
    ``length`` missing bytes) returns the notes it raised as (kind name,
    direction, a, b) tuples."""
    cdef tctx ctx
    cdef tflow *tf

    def __cinit__(self):
        memset(&self.ctx, 0, sizeof(tctx))
        self.ctx.recorded = <rnote *>calloc(RECORDED, sizeof(rnote))
        self.tf = <tflow *>calloc(1, sizeof(tflow))
        if self.tf == NULL or self.ctx.recorded == NULL:
            raise MemoryError()
        self.tf.ctx = &self.ctx

    def __dealloc__(self):
        if self.tf != NULL:
            _free_flow(self.tf)
        free(self.ctx.recorded)

    def feed(self, int direction, data, uint32_t length=0):
        cdef const uint8_t[:] view
        cdef size_t i
        direction = CLIENT if direction else 0
        self.ctx.nrecorded = 0
        if not self.tf.d[direction].dead:
            if data is None:
                _feed(self.tf, direction, NULL, length)
            else:
                view = data
                if view.shape[0]:
                    _feed(self.tf, direction, &view[0], <uint32_t>view.shape[0])
        names = {v: k for k, v in KIND.items()}
        return [(names[self.ctx.recorded[i].kind], self.ctx.recorded[i].direction,
                 self.ctx.recorded[i].a, self.ctx.recorded[i].b)
                for i in range(self.ctx.nrecorded)]

    def message(self, int which):
        return message(PyCapsule_New(self.tf, b"mos.cstate", NULL), which)

    def state(self):
        return flow_state(PyCapsule_New(self.tf, b"mos.cstate", NULL))

    def stats(self):
        return {"records": self.ctx.records, "anomalies": self.ctx.anomalies,
                "not_tls": self.ctx.not_tls, "oversized": self.ctx.oversized,
                "tls_flows": self.ctx.tls_flows}
