# cython: language_level=3
"""HTTP/1.x as a compiled stream consumer, on libhtp (OISF's HTTP parser, the
one Suricata 7 uses: request/response pairing, pipelining, keep-alive,
Content-Length and chunked bodies, gzip/deflate decompression with a bomb
limit, 100-continue, CONNECT, HEAD and 204/304 without bodies, and the
normalisation an IDS needs).

Both streams of a flow feed one libhtp connection parser, kept in the
consumer's slot of the server side (the request stream) and reached from
the other side with mos_cstream_peer_state.  Parser callbacks raise
STREAM_NOTEs with code MAGIC | kind, a = transaction index, b = for body
notes (start << 32) | length of the chunk in this packet's body arena.  No
Python runs per byte or per packet: only handlers of the notes run, and
they read what they need through the functions at the bottom.

When a flow ends, closing its parser may still raise notes (a response
delimited by the close completes), whose handlers run after the end
callback: the ended flow's parser is kept in a short FIFO (GRAVES of
them, found by flow id) and freed when newer ones push it out.

A direction libhtp cannot parse (an error, a gap outside a body, a tunnel
after CONNECT) stops being fed; the other goes on, and HTTP_ANOMALY says
why.  Transactions stay readable until the next packet of the flow after
both their halves completed (handlers of the notes that completed them
have run by then)."""

from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

from mos.dualstack._cengine cimport (mos_consumer_t, mos_cstream_t, mos_cstream_note,
                                     mos_cstream_peer_state, mos_flow_t)
from mos.app._htp cimport *

cdef extern from "<string.h>" nogil:
    void *memrchr(const void *s, int c, size_t n)

#: note codes: MAGIC | kind (a consumer's codes are its own; the magic keeps
#: these apart from other consumers' in filters that see every note)
MAGIC = 0x68740000
cdef enum:
    K_REQUEST = 1       # request line and headers parsed
    K_RESPONSE = 2      # status line and headers parsed
    K_REQUEST_BODY = 3  # a chunk of request body (de-chunked, decompressed)
    K_RESPONSE_BODY = 4
    K_REQUEST_DONE = 5
    K_RESPONSE_DONE = 6
    K_ANOMALY = 7       # a = direction (1 request, 0 response), b = A_* reason
    K_REQUEST_LINE = 8  # the request line parsed (headers may follow)
    M = 0x68740000

KIND = {"request": K_REQUEST, "response": K_RESPONSE, "request_body": K_REQUEST_BODY,
        "response_body": K_RESPONSE_BODY, "request_done": K_REQUEST_DONE,
        "response_done": K_RESPONSE_DONE, "anomaly": K_ANOMALY,
        "request_line": K_REQUEST_LINE}

cdef enum:
    A_ERROR = 1         # libhtp could not parse the direction: given up
    A_GAP = 2           # bytes missing outside a body: given up
    A_TUNNEL = 3        # CONNECT succeeded / Upgrade: the rest is not HTTP
    A_HELD = 4          # too many bytes waiting for the other direction: given up
    A_ARENA = 5         # body bytes of one packet beyond the arena: not shown

ANOMALIES = {A_ERROR: "parse_error", A_GAP: "gap", A_TUNNEL: "tunnel",
             A_HELD: "held_overflow", A_ARENA: "body_truncated"}

DEF REQ = 1             # the server receives requests: mos Side.SERVER == 1
DEF HELD_MAX = 65536    # bytes kept for a direction libhtp asked to wait
DEF GRAVES = 1024       # ended flows' parsers kept for the handlers of their last notes


cdef struct hdir:
    uint8_t *held           # bytes libhtp did not take yet (it wants the other side first)
    size_t nheld, capheld
    uint8_t *arena          # body bytes of the current packet, for the notes' handlers
    size_t narena, caparena
    uint32_t pkt            # packet the arena belongs to
    uint8_t dead            # 0, or the A_* reason this direction stopped
    # responses only: a partial line kept back from libhtp (see _feed_response)
    uint8_t *carry
    size_t ncarry, capcarry


cdef struct hflow:
    htp_connp_t *connp
    mos_cstream_t *cs       # the stream being fed (during a call only)
    hdir d[2]               # [0] responses (client side), [1] requests
    size_t first_live       # transactions below are destroyed
    uint8_t tunnel          # CONNECT or Upgrade succeeded: no more notes
    uint32_t last_pkt       # the packet of the last call: transactions are reaped
                            # only when a new one comes (handlers of the notes of
                            # the previous one have run by then)
    hctx *ctx


cdef struct grave:
    uint64_t flow_id
    hflow *hf


cdef struct hctx:
    htp_cfg_t *cfg
    size_t arena_max
    int bodies              # raise body notes (HTTP_BODY): someone reads bodies
    size_t keep             # body bytes kept per transaction and direction (0: none)
    uint32_t want           # bit k: raise notes of kind k (an app that logs requests
                            # needs no note per response line: no Python call for it)
    grave graves[GRAVES]    # a ring: the oldest is freed when a new one comes
    size_t ngraves
    uint64_t flows, requests, responses, anomalies, given_up, destroyed


cdef inline hflow *_hf_of_tx(htp_tx_t *tx) noexcept nogil:
    return <hflow *>htp_connp_get_user_data(tx.connp)


cdef inline void _note(hflow *hf, int direction, uint32_t kind, uint64_t a, uint64_t b) noexcept nogil:
    """A note on the stream of `direction` (1: requests, received by the server)."""
    cdef mos_cstream_t cs
    if hf.cs == NULL or not (hf.ctx.want >> kind) & 1:
        return
    cs = hf.cs[0]
    cs.side = direction
    mos_cstream_note(&cs, M | kind, a, b)


cdef void _give_up(hflow *hf, int direction, int why) noexcept nogil:
    if hf.d[direction].dead:
        return
    hf.d[direction].dead = why
    hf.d[direction].nheld = 0
    hf.d[direction].ncarry = 0
    hf.ctx.given_up += 1
    hf.ctx.anomalies += 1
    _note(hf, direction, K_ANOMALY, direction, why)


cdef int _on_req_line(htp_tx_t *tx) noexcept nogil:
    _note(_hf_of_tx(tx), REQ, K_REQUEST_LINE, tx.index, 0)
    return HTP_OK


cdef int _on_req_headers(htp_tx_t *tx) noexcept nogil:
    cdef hflow *hf = _hf_of_tx(tx)
    hf.ctx.requests += 1
    _note(hf, REQ, K_REQUEST, tx.index, 0)
    return HTP_OK


cdef inline bint _is_connect(htp_tx_t *tx) noexcept nogil:
    return (tx.request_method != NULL and bstr_len(tx.request_method) == 7
            and memcmp(bstr_ptr(tx.request_method), b"CONNECT", 7) == 0)


cdef int _on_res_headers(htp_tx_t *tx) noexcept nogil:
    cdef hflow *hf = _hf_of_tx(tx)
    cdef int st = tx.response_status_number
    hf.ctx.responses += 1
    _note(hf, 0, K_RESPONSE, tx.index, 0)
    if st == 101 or (200 <= st < 300 and _is_connect(tx)):
        # Upgrade or a CONNECT tunnel: what follows is not HTTP (the flow is
        # still tracked; the parser stops here both ways)
        hf.tunnel = 1
        _give_up(hf, REQ, A_TUNNEL)
        _give_up(hf, 0, A_TUNNEL)
    return HTP_OK


cdef int _on_req_done(htp_tx_t *tx) noexcept nogil:
    cdef hflow *hf = _hf_of_tx(tx)
    if not hf.tunnel:
        _note(hf, REQ, K_REQUEST_DONE, tx.index, 0)
    return HTP_OK


cdef int _on_res_done(htp_tx_t *tx) noexcept nogil:
    cdef hflow *hf = _hf_of_tx(tx)
    if not hf.tunnel:
        _note(hf, 0, K_RESPONSE_DONE, tx.index, 0)
    return HTP_OK


cdef struct txbody:
    # the first ctx.keep bytes of a transaction's bodies ([0] response, [1] request)
    uint8_t *b[2]
    size_t n[2]


cdef void _keep(htp_tx_t *tx, int direction, const uint8_t *data, size_t n,
                size_t keep) noexcept nogil:
    """Body bytes kept with their transaction, up to `keep` per direction (an
    IDS inspects the first bytes of each body: no Python call per packet)."""
    cdef txbody *tb = <txbody *>htp_tx_get_user_data(tx)
    if tb == NULL:
        tb = <txbody *>calloc(1, sizeof(txbody))
        if tb == NULL:
            return
        htp_tx_set_user_data(tx, tb)
    if tb.n[direction] >= keep:
        return
    if tb.b[direction] == NULL:
        tb.b[direction] = <uint8_t *>malloc(keep)
        if tb.b[direction] == NULL:
            return
    if n > keep - tb.n[direction]:
        n = keep - tb.n[direction]
    memcpy(tb.b[direction] + tb.n[direction], data, n)
    tb.n[direction] += n


cdef void _free_kept(htp_tx_t *tx) noexcept nogil:
    cdef txbody *tb = <txbody *>htp_tx_get_user_data(tx)
    if tb != NULL:
        free(tb.b[0])
        free(tb.b[1])
        free(tb)
        htp_tx_set_user_data(tx, NULL)


cdef int _body(htp_tx_data_t *d, int direction) noexcept nogil:
    cdef hflow *hf = _hf_of_tx(d.tx)
    cdef hdir *h = &hf.d[direction]
    cdef size_t n = d.len, cap
    cdef uint8_t *p
    if d.data == NULL or n == 0 or hf.tunnel:
        return HTP_OK
    if hf.ctx.keep:
        _keep(d.tx, direction, d.data, n, hf.ctx.keep)
    if not hf.ctx.bodies:
        return HTP_OK
    if hf.cs != NULL and h.pkt != hf.cs.pkt:
        h.pkt = hf.cs.pkt
        h.narena = 0
    if h.narena + n > hf.ctx.arena_max:
        n = hf.ctx.arena_max - h.narena if hf.ctx.arena_max > h.narena else 0
        hf.ctx.anomalies += 1
        _note(hf, direction, K_ANOMALY, direction, A_ARENA)
        if n == 0:
            return HTP_OK
    if h.narena + n > h.caparena:
        cap = h.caparena * 2 if h.caparena else 16384
        while cap < h.narena + n:
            cap *= 2
        p = <uint8_t *>realloc(h.arena, cap)
        if p == NULL:
            return HTP_OK
        h.arena = p
        h.caparena = cap
    memcpy(h.arena + h.narena, d.data, n)
    _note(hf, direction, K_REQUEST_BODY if direction == REQ else K_RESPONSE_BODY, d.tx.index,
          (<uint64_t>h.narena << 32) | n)
    h.narena += n
    return HTP_OK


cdef int _on_req_body(htp_tx_data_t *d) noexcept nogil:
    return _body(d, REQ)


cdef int _on_res_body(htp_tx_data_t *d) noexcept nogil:
    return _body(d, 0)


cdef void _hold(hflow *hf, int direction, const uint8_t *data, size_t n) noexcept nogil:
    cdef hdir *h = &hf.d[direction]
    if _append(&h.held, &h.nheld, &h.capheld, data, n) < 0:
        _give_up(hf, direction, A_HELD)


cdef int _append(uint8_t **buf, size_t *length, size_t *cap, const uint8_t *data,
                 size_t n) noexcept nogil:
    """Append to a buffer of at most HELD_MAX bytes (-1: it would pass that,
    or no memory)."""
    cdef uint8_t *p
    if length[0] + n > HELD_MAX:
        return -1
    if length[0] + n > cap[0]:
        p = <uint8_t *>realloc(buf[0], HELD_MAX)
        if p == NULL:
            return -1
        buf[0] = p
        cap[0] = HELD_MAX
    memcpy(buf[0] + length[0], data, n)
    length[0] += n
    return 0


cdef int _parse(hflow *hf, int direction, const uint8_t *data, size_t n) noexcept nogil:
    """One chunk to libhtp; what it leaves for later is held.  Returns 1 if it
    took bytes (the other side may move now)."""
    cdef htp_time_t ts
    cdef int rc
    cdef size_t used
    cdef htp_tx_t *tx
    ts.tv_sec = 0
    ts.tv_usec = 0
    if data == NULL:
        # missing bytes: libhtp can skip them inside a body; anywhere else
        # the message boundaries are lost
        tx = htp_connp_get_in_tx(hf.connp) if direction == REQ else htp_connp_get_out_tx(hf.connp)
        if tx == NULL or (direction == REQ and tx.request_progress != HTP_REQUEST_BODY) or \
                (direction != REQ and tx.response_progress != HTP_RESPONSE_BODY):
            _give_up(hf, direction, A_GAP)
            return 0
    if direction == REQ:
        rc = htp_connp_req_data(hf.connp, &ts, data, n)
    else:
        rc = htp_connp_res_data(hf.connp, &ts, data, n)
    if rc == HTP_STREAM_DATA_OTHER:
        used = htp_connp_req_data_consumed(hf.connp) if direction == REQ \
            else htp_connp_res_data_consumed(hf.connp)
        if data != NULL and used < n:
            _hold(hf, direction, data + used, n - used)
        return used > 0
    if rc == HTP_STREAM_ERROR:
        _give_up(hf, direction, A_GAP if data == NULL else A_ERROR)
        return 0
    if rc == HTP_STREAM_TUNNEL:
        _give_up(hf, direction, A_TUNNEL)
        return 1
    return 1


cdef inline bint _res_between(hflow *hf) noexcept nogil:
    """The response parser is between messages (the last one complete)."""
    cdef htp_tx_t *tx = htp_connp_get_out_tx(hf.connp)
    return tx == NULL or tx.response_progress == HTP_RESPONSE_COMPLETE


cdef int _feed_response(hflow *hf, const uint8_t *data, size_t n) noexcept nogil:
    """Response bytes to libhtp, never ending a call with the start of a
    line right after a complete response: libhtp 0.5.42 parses such a line
    wrong once its end comes in the next call (RES_FINALIZE steps back over
    the bytes of both calls but only the current chunk can be re-read, and
    the line comes out doubled).  So such a partial line is carried to the
    next call, whole lines and bodies go at once."""
    cdef const uint8_t *lf
    cdef size_t k, r, took = 0
    cdef htp_tx_t *tx
    if data == NULL:
        return _parse(hf, 0, data, n)
    tx = htp_connp_get_out_tx(hf.connp)
    if tx != NULL and tx.response_progress == HTP_RESPONSE_BODY and \
            tx.response_transfer_coding == HTP_CODING_IDENTITY and \
            tx.response_content_length >= 0 and \
            <uint64_t>(tx.response_content_length - tx.response_message_len) >= n:
        return _parse(hf, 0, data, n)     # all body (the common case): no line starts here
    # up to the last LF: every line in it is whole
    lf = <const uint8_t *>memrchr(data, 10, n)
    k = <size_t>(lf - data) + 1 if lf != NULL else 0
    if k:
        took |= _parse(hf, 0, data, k)
    while k < n and not hf.d[0].dead and not hf.d[0].nheld:
        if _res_between(hf):
            break                         # the tail starts a line: carry it
        tx = htp_connp_get_out_tx(hf.connp)
        if tx.response_progress == HTP_RESPONSE_BODY and \
                tx.response_transfer_coding == HTP_CODING_IDENTITY and \
                tx.response_content_length >= 0:
            r = <size_t>(tx.response_content_length - tx.response_message_len)
            if 0 < r < n - k:
                took |= _parse(hf, 0, data + k, r)   # the body's end, then look again
                k += r
                continue
        took |= _parse(hf, 0, data + k, n - k)   # inside a message: libhtp buffers fine
        k = n
    if k < n and not hf.d[0].dead:
        if hf.d[0].nheld:
            _hold(hf, 0, data + k, n - k)
        else:
            _carry(hf, data + k, n - k)
    return took


cdef void _carry(hflow *hf, const uint8_t *data, size_t n) noexcept nogil:
    cdef hdir *h = &hf.d[0]
    if _append(&h.carry, &h.ncarry, &h.capcarry, data, n) < 0:
        _give_up(hf, 0, A_HELD)


cdef int _feed(hflow *hf, int direction, const uint8_t *data, size_t n) noexcept nogil:
    """A chunk of `direction`: requests straight to libhtp, responses after
    the carried partial line (if any)."""
    cdef uint8_t *buf
    cdef size_t m
    cdef int took
    if direction == REQ:
        return _parse(hf, REQ, data, n)
    if hf.d[0].ncarry == 0:
        return _feed_response(hf, data, n)
    if data == NULL:                      # a gap after a partial line
        hf.d[0].ncarry = 0
        _give_up(hf, 0, A_GAP)
        return 0
    _carry(hf, data, n)                   # the partial line, then the new bytes
    if hf.d[0].dead:
        return 0
    # detached first: feeding may carry a new partial line
    buf = hf.d[0].carry
    m = hf.d[0].ncarry
    hf.d[0].carry = NULL
    hf.d[0].ncarry = hf.d[0].capcarry = 0
    took = _feed_response(hf, buf, m)
    free(buf)
    return took


cdef void _retry_held(hflow *hf, int direction) noexcept nogil:
    """Bytes the other side's progress may let libhtp take now."""
    cdef hdir *h = &hf.d[direction]
    cdef uint8_t *buf
    cdef size_t n
    if h.nheld == 0 or h.dead:
        return
    buf = h.held
    n = h.nheld
    h.held = NULL
    h.nheld = 0
    h.capheld = 0
    _feed(hf, direction, buf, n)
    free(buf)


cdef void _reap(hflow *hf) noexcept nogil:
    """Destroy transactions whose both halves completed before this packet."""
    cdef htp_conn_t *conn = htp_connp_get_connection(hf.connp)
    cdef size_t i, n
    cdef htp_tx_t *tx
    if conn == NULL:
        return
    n = htp_list_array_size(conn.transactions)
    i = hf.first_live
    while i < n:
        tx = <htp_tx_t *>htp_list_array_get(conn.transactions, i)
        if tx != NULL:
            if tx.request_progress != HTP_REQUEST_COMPLETE or \
                    tx.response_progress != HTP_RESPONSE_COMPLETE:
                break
            _free_kept(tx)
            if htp_tx_destroy(tx) != HTP_OK:
                break
            hf.ctx.destroyed += 1
        i += 1
    hf.first_live = i


cdef hflow *_flow_state(hctx *ctx, mos_cstream_t *cs) noexcept nogil:
    cdef void **slot = cs.state if cs.side == REQ else mos_cstream_peer_state(cs)
    cdef hflow *hf = <hflow *>slot[0]
    cdef htp_time_t ts
    if hf != NULL:
        return hf
    hf = <hflow *>calloc(1, sizeof(hflow))
    if hf == NULL:
        return NULL
    hf.connp = htp_connp_create(ctx.cfg)
    if hf.connp == NULL:
        free(hf)
        return NULL
    hf.ctx = ctx
    hf.d[0].pkt = hf.d[1].pkt = hf.last_pkt = 0xFFFFFFFF
    ts.tv_sec = 0
    ts.tv_usec = 0
    htp_connp_open(hf.connp, NULL, 0, NULL, 0, &ts)
    htp_connp_set_user_data(hf.connp, hf)
    ctx.flows += 1
    slot[0] = hf
    return hf


cdef void _data(void *vctx, mos_cstream_t *cs, uint64_t off, const uint8_t *data,
                uint32_t length) noexcept nogil:
    cdef hctx *ctx = <hctx *>vctx
    cdef hflow *hf = _flow_state(ctx, cs)
    cdef int direction = REQ if cs.side == REQ else 0
    if hf == NULL or hf.d[direction].dead:
        return
    hf.cs = cs
    if hf.last_pkt != cs.pkt:
        hf.last_pkt = cs.pkt
        _reap(hf)
    if hf.d[direction].nheld:
        # still waiting for the other side: keep the order of the bytes
        if data == NULL:
            _give_up(hf, direction, A_GAP)
        else:
            _hold(hf, direction, data, length)
    elif _feed(hf, direction, data, length):
        _retry_held(hf, 1 - direction)
    hf.cs = NULL


cdef void _free_flow(hflow *hf) noexcept nogil:
    cdef int k
    cdef size_t i
    cdef htp_conn_t *conn = htp_connp_get_connection(hf.connp)
    cdef htp_tx_t *tx
    if conn != NULL:
        for i in range(htp_list_array_size(conn.transactions)):
            tx = <htp_tx_t *>htp_list_array_get(conn.transactions, i)
            if tx != NULL:
                _free_kept(tx)
    htp_connp_destroy_all(hf.connp)
    for k in range(2):
        free(hf.d[k].held)
        free(hf.d[k].arena)
        free(hf.d[k].carry)
    free(hf)


cdef void _end(void *vctx, mos_cstream_t *cs) noexcept nogil:
    cdef hctx *ctx = <hctx *>vctx
    cdef hflow *hf = <hflow *>cs.state[0]
    cdef htp_time_t ts
    cdef grave *g
    if hf == NULL:
        return
    ts.tv_sec = 0
    ts.tv_usec = 0
    hf.cs = cs
    if hf.d[0].ncarry and not hf.d[0].dead:   # the last partial line: nothing follows
        _parse(hf, 0, hf.d[0].carry, hf.d[0].ncarry)
        hf.d[0].ncarry = 0
    htp_connp_close(hf.connp, &ts)   # completes a response delimited by the close
    hf.cs = NULL
    cs.state[0] = NULL
    g = &ctx.graves[ctx.ngraves % GRAVES]
    if g.hf != NULL:
        _free_flow(g.hf)
    g.hf = hf
    g.flow_id = cs.f.id
    ctx.ngraves += 1


cdef class HttpParser:
    """The consumer: ``engine.add_consumer(HttpParser(), Side.BOTH)``.
    ``arena_max``: body bytes one packet may show to handlers per direction
    (more are counted, not shown); ``bomb_limit``: largest decompressed body
    (libhtp's compression bomb limit); ``bodies``: raise a note per body
    chunk (a Python call per body packet: only for apps that read bodies)."""
    cdef mos_consumer_t c
    cdef hctx ctx
    cdef readonly object mos_consumer

    def __cinit__(self, size_t arena_max=1 << 20, size_t bomb_limit=1 << 24, bint bodies=False):
        memset(&self.ctx, 0, sizeof(hctx))
        self.ctx.bodies = bodies
        self.ctx.want = 0xFFFFFFFF
        self.ctx.cfg = htp_config_create()
        if self.ctx.cfg == NULL:
            raise MemoryError("libhtp: no configuration")
        self.ctx.arena_max = arena_max
        htp_config_set_server_personality(self.ctx.cfg, HTP_SERVER_IDS)
        htp_config_set_response_decompression(self.ctx.cfg, 1)
        htp_config_set_compression_bomb_limit(self.ctx.cfg, bomb_limit)
        htp_config_set_tx_auto_destroy(self.ctx.cfg, 0)
        htp_config_register_request_line(self.ctx.cfg, _on_req_line)
        htp_config_register_request_headers(self.ctx.cfg, _on_req_headers)
        htp_config_register_response_headers(self.ctx.cfg, _on_res_headers)
        htp_config_register_request_body_data(self.ctx.cfg, _on_req_body)
        htp_config_register_response_body_data(self.ctx.cfg, _on_res_body)
        htp_config_register_request_complete(self.ctx.cfg, _on_req_done)
        htp_config_register_response_complete(self.ctx.cfg, _on_res_done)
        memset(&self.c, 0, sizeof(mos_consumer_t))
        self.c.data = _data
        self.c.end = _end
        self.c.ctx = &self.ctx
        self.mos_consumer = PyCapsule_New(&self.c, b"mos.consumer", NULL)

    def __dealloc__(self):
        cdef int i
        for i in range(GRAVES):
            if self.ctx.graves[i].hf != NULL:
                _free_flow(self.ctx.graves[i].hf)
                self.ctx.graves[i].hf = NULL
        if self.ctx.cfg != NULL:
            htp_config_destroy(self.ctx.cfg)
            self.ctx.cfg = NULL

    @property
    def kinds(self):
        """The note kinds raised (names of KIND); all by default."""
        return sorted(k for k, v in KIND.items() if (self.ctx.want >> v) & 1)

    @kinds.setter
    def kinds(self, names):
        cdef uint32_t w = 0
        for n in names:
            if n not in KIND:
                raise ValueError(f"kinds: {n!r} is not one of {', '.join(sorted(KIND))}")
            w |= 1u << KIND[n]
        self.ctx.want = w

    @property
    def bodies(self):
        """Body notes (HTTP_BODY) are raised."""
        return bool(self.ctx.bodies)

    @bodies.setter
    def bodies(self, bint on):
        self.ctx.bodies = on

    @property
    def keep_bodies(self):
        """Body bytes kept with each transaction per direction (0: none),
        for body_kept: a reader of the first bytes of bodies needs no
        Python call per body packet."""
        return self.ctx.keep

    @keep_bodies.setter
    def keep_bodies(self, size_t n):
        self.ctx.keep = n

    def ended(self, uint64_t flow_id):
        """The parser state of an ended flow still kept (a "mos.cstate"
        capsule), or None."""
        cdef size_t i
        for i in range(GRAVES):
            if self.ctx.graves[i].hf != NULL and self.ctx.graves[i].flow_id == flow_id:
                return PyCapsule_New(self.ctx.graves[i].hf, b"mos.cstate", NULL)
        return None

    def stats(self):
        return {"flows": self.ctx.flows, "requests": self.ctx.requests,
                "responses": self.ctx.responses, "anomalies": self.ctx.anomalies,
                "given_up": self.ctx.given_up, "transactions_freed": self.ctx.destroyed}


# ---------------------------------------------------------------- handler side

cdef hflow *_hf(capsule) except NULL:
    if not PyCapsule_IsValid(capsule, b"mos.cstate"):
        raise TypeError("not a consumer state capsule")
    return <hflow *>PyCapsule_GetPointer(capsule, b"mos.cstate")


cdef bytes _b(bstr *s):
    if s == NULL:
        return None
    return (<char *>bstr_ptr(s))[:bstr_len(s)]


cdef list _headers(htp_table_t *t):
    cdef size_t i, n
    cdef htp_header_t *h
    out = []
    if t == NULL:
        return out
    n = htp_table_size(t)
    for i in range(n):
        h = <htp_header_t *>htp_table_get_index(t, i, NULL)
        if h != NULL:
            out.append((_b(h.name), _b(h.value)))
    return out


cdef htp_tx_t *_tx(hflow *hf, size_t index):
    cdef htp_conn_t *conn = htp_connp_get_connection(hf.connp)
    if conn == NULL or index < hf.first_live or index >= htp_list_array_size(conn.transactions):
        return NULL
    return <htp_tx_t *>htp_list_array_get(conn.transactions, index)


def live_indexes(capsule):
    """Indexes of the transactions still readable."""
    cdef hflow *hf = _hf(capsule)
    cdef htp_conn_t *conn = htp_connp_get_connection(hf.connp)
    cdef size_t i
    if conn == NULL:
        return []
    return [i for i in range(hf.first_live, htp_list_array_size(conn.transactions))
            if htp_list_array_get(conn.transactions, i) != NULL]


def request_fields(capsule, size_t index):
    """The request half of transaction `index` (None if gone or not started)."""
    cdef htp_tx_t *tx = _tx(_hf(capsule), index)
    if tx == NULL or tx.request_progress < HTP_REQUEST_LINE:
        return None
    return {"line": _b(tx.request_line), "method": _b(tx.request_method),
            "uri": _b(tx.request_uri), "protocol": _b(tx.request_protocol),
            "headers": _headers(tx.request_headers), "host": _b(tx.request_hostname),
            "port": tx.request_port_number if tx.request_port_number >= 0 else None,
            "body_length": tx.request_entity_len,
            "headers_done": tx.request_progress > HTP_REQUEST_HEADERS,
            "complete": tx.request_progress == HTP_REQUEST_COMPLETE}


def response_fields(capsule, size_t index):
    cdef htp_tx_t *tx = _tx(_hf(capsule), index)
    if tx == NULL or tx.response_progress < HTP_RESPONSE_HEADERS:
        return None
    return {"line": _b(tx.response_line), "protocol": _b(tx.response_protocol),
            "status": tx.response_status_number if tx.response_status_number > 0 else None,
            "status_raw": _b(tx.response_status), "message": _b(tx.response_message),
            "headers": _headers(tx.response_headers),
            "body_length": tx.response_entity_len,
            "complete": tx.response_progress == HTP_RESPONSE_COMPLETE}


def body_chunk(capsule, int direction, uint64_t where):
    """The body bytes a body note points at (its b), from this packet's arena."""
    cdef hflow *hf = _hf(capsule)
    cdef hdir *h = &hf.d[1 if direction else 0]
    cdef size_t start = <size_t>(where >> 32), n = <size_t>(where & 0xFFFFFFFF)
    if start + n > h.narena:
        return b""
    return (<char *>h.arena)[start:start + n]


def body_kept(capsule, size_t index, int direction):
    """The body bytes kept with transaction `index` (direction 1: the
    request's, 0: the response's), b"" if none."""
    cdef htp_tx_t *tx = _tx(_hf(capsule), index)
    cdef txbody *tb
    if tx == NULL:
        return b""
    tb = <txbody *>htp_tx_get_user_data(tx)
    if tb == NULL or tb.b[1 if direction else 0] == NULL:
        return b""
    return (<char *>tb.b[1 if direction else 0])[:tb.n[1 if direction else 0]]


def direction_state(capsule):
    """(request direction stopped reason, response direction's) as names, or None."""
    cdef hflow *hf = _hf(capsule)
    return (ANOMALIES.get(hf.d[1].dead), ANOMALIES.get(hf.d[0].dead))
