# _EngineState: the C engine handle, its configuration and counters (the
# first link of CoreEngine: state -> dispatch -> timers -> output -> input).

cdef class _EngineState:
    """The C engine (engine.c) and what it counts."""

    def __cinit__(self, *args, **kwargs):
        self.e = NULL

    def __init__(self, config=None):
        from mos.dualstack.config import Config
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            raise TypeError(f"config must be a mos.Config, not {type(config).__name__}")
        self.config = config
        cdef mos_config_t c
        memset(&c, 0, sizeof(c))
        c.buffer_size[0] = config.buffer_size
        c.buffer_size[1] = config.buffer_size
        c.overlap[0] = c.overlap[1] = _overlap_code(config.overlap)
        c.midstream = 1 if config.midstream else 0
        c.checksum = {"ignore": MOS_CSUM_IGNORE, "verify": MOS_CSUM_VERIFY, "auto": MOS_CSUM_AUTO}[config.checksum]
        c.digest = 1 if config.digest else 0
        c.keep_read = 1 if config.keep_read else 0
        c.max_flows = config.max_flows
        c.max_embryonic = min(config.max_embryonic, config.max_flows)
        c.tcp_timeout_ns = <uint64_t>(config.tcp_timeout * 1e9)
        c.defrag_mem = config.defrag_memory
        c.defrag_timeout_ns = <uint64_t>(config.defrag_timeout * 1e9)
        c.reassembly_memcap = config.reassembly_memcap
        self.e = mos_engine_new(&c)
        if self.e == NULL:
            raise MemoryError("cannot allocate the engine")
        self.checksum_mode = config.checksum
        self.serial = 1
        # 'auto' raises while frames are fed by hand; the runtime turns it
        # into 'log' for a run (on_handler_error below)
        self._policy = _POLICIES.get(config.on_handler_error, POLICY_RAISE)
        self._policy_auto = config.on_handler_error == "auto"

    def add_consumer(self, provider, side=Side.BOTH, int lookback=0):
        """Add a compiled stream consumer and return its number (the
        ``consumer`` of its notes' ``flow.event_info``).

        ``provider.mos_consumer`` is a PyCapsule named "mos.consumer" holding
        a ``mos_consumer_t`` (engine.h): C callbacks that get each stream's
        in-order bytes of ``side`` inside the core, without a Python call,
        and may raise ``Event.STREAM_NOTE``.  The engine keeps ``provider``
        alive while the consumer is added.  ``lookback`` bytes behind each
        stream's in-order frontier stay readable with ``flow.ppeek`` (for
        handlers that look around a note).  Example: ``mos.consumers.Literal``.
        """
        capsule = getattr(provider, "mos_consumer", None)
        if not PyCapsule_IsValid(capsule, b"mos.consumer"):
            raise TypeError(f"{provider!r} is not a compiled stream consumer: it needs a "
                            f"mos_consumer attribute, a PyCapsule named 'mos.consumer'")
        if lookback < 0 or lookback > MAX_BUFFER:
            raise ValueError(f"lookback {lookback} out of range 0..{MAX_BUFFER}")
        cdef mos_consumer_t c = (<mos_consumer_t *>PyCapsule_GetPointer(capsule, b"mos.consumer"))[0]
        c.sides = 3 if int(side) == 2 else (1 << _side_index(side))
        c.lookback = <uint32_t>lookback
        cdef int cid = mos_engine_add_consumer(self.e, &c)
        if cid < 0:
            raise RegistrationError(f"cannot add {provider!r}: at most {MOS_MAX_CONSUMERS} "
                                    f"consumers per engine, or it has no data callback")
        if self._consumers is None:
            self._consumers = {}
        self._consumers[cid] = provider
        return cid

    def remove_consumer(self, int cid):
        """Remove consumer ``cid``: its live streams end first (its end callback)."""
        if self._consumers is None or cid not in self._consumers:
            raise KeyError(f"no consumer {cid}")
        mos_engine_remove_consumer(self.e, cid)
        del self._consumers[cid]

    def __dealloc__(self):
        if self.e != NULL:
            mos_engine_free(self.e)
            self.e = NULL

    @property
    def now(self):
        """Current time (seconds, capture time)."""
        return mos_engine_now(self.e) / 1e9

    @property
    def table_memory(self):
        """Bytes held by the flow table itself (not payload buffers)."""
        return mos_engine_memory(self.e)

    def counters(self):
        cdef const mos_counters_t *c = mos_engine_counters(self.e)
        cdef const mos_defrag_stats_t *d = mos_engine_defrag_stats(self.e)
        cdef const mos_rbuf_pool_t *pool = mos_engine_pool(self.e)
        out = {
            "frames": c.frames, "bytes": c.bytes, "tcp": c.tcp, "non_tcp": c.non_tcp,
            "truncated": c.truncated, "malformed": c.malformed, "unsupported": c.unsupported,
            "bad_checksum": c.bad_checksum, "fragments": c.fragments, "orphans": c.orphans,
            "flows_created": c.flows_created, "flows_ended": c.flows_ended,
            "flows_live": c.flows_live, "events": c.events, "rexmit": c.rexmit,
            "payload_bytes": c.payload_bytes, "ooo_segments": c.ooo_segments,
            "snapped": c.snapped, "handler_calls": self.handler_calls,
            "handler_errors": self._handler_error_total(),
            "rewritten": c.rewritten, "rewrite_failed": c.rewrite_failed, "split": c.split,
            "nomem": c.nomem, "embryonic": c.embryonic, "evicted_embryonic": c.evicted_embryonic,
            "ip_len_over_wire": c.ip_len_over_wire, "blocked": c.blocked,
            "ended": {r.name.lower(): c.ended[int(r)] for r in EndReason},
            "errors": {r.name.lower(): c.errors[int(r)] for r in ErrorReason},
            "defrag": {"fragments": d.fragments, "reassembled": d.reassembled,
                       "timeouts": d.timeouts, "mem_drops": d.mem_drops,
                       "overlaps": d.overlaps, "invalid": d.invalid},
            # receive buffers: bytes held now and at most (blocks and their
            # tables), and what the memcap refused
            "reassembly": {"memcap": pool.memcap, "in_use": pool.in_use, "peak": pool.peak,
                           "refused_segments": pool.refused_segments,
                           "refused_bytes": pool.refused_bytes},
        }
        return out

    def _handler_error_total(self):
        return 0  # _Dispatch counts them

    cdef void _decide_checksum(self, int verify):
        """The runtime's checksum decision for checksum='auto', taken on a
        capture's first packets before any is processed (-1: no decision)."""
        if self.config.checksum == "auto" and not self._checksum_decided:
            if verify >= 0:
                mos_engine_set_checksum(self.e, MOS_CSUM_VERIFY if verify else MOS_CSUM_IGNORE)
                self.checksum_mode = "verify" if verify else "ignore"
            self._checksum_decided = True
