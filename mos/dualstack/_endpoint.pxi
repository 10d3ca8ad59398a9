# Endpoint: one end's TCP model as the monitor sees it (included by
# _engine.pyx; fields in _engine.pxd).

cdef class Endpoint:
    """One end's TCP model as the monitor sees it (live view)."""

    cdef mos_ep_t *_ep(self) except NULL:
        return &self.flow._f().ep[self.side]

    @property
    def state(self):
        return _STATES[self._ep().state]

    @property
    def isn(self):
        return self._ep().isn

    @property
    def snd_nxt(self):
        """Next sequence number after the highest one this end sent."""
        return self._ep().snd_nxt

    @property
    def ack(self):
        """Last acknowledgement number this end sent (its RCV.NXT)."""
        return self._ep().ack

    @property
    def window(self):
        """Last receive window it advertised, scaled."""
        return self._ep().win

    @property
    def mss(self):
        return self._ep().mss

    @property
    def wscale(self):
        cdef mos_ep_t *ep = self._ep()
        return ep.wscale if ep.flags & MOS_EPF_WSCALE else None

    @property
    def sack_permitted(self):
        return bool(self._ep().flags & MOS_EPF_SACKOK)

    @property
    def timestamps(self):
        return bool(self._ep().flags & MOS_EPF_TS)

    @property
    def tsval(self):
        return self._ep().tsval

    @property
    def packets(self):
        """Packets this end sent."""
        return self._ep().pkts

    @property
    def bytes(self):
        """Payload bytes this end sent, retransmissions included."""
        return self._ep().bytes

    @property
    def stream_bytes(self):
        """Length of the stream this end sent (highest offset seen)."""
        return self._ep().data_end

    @property
    def received(self):
        """In-order bytes this end received (its buffer's head offset)."""
        return self._ep().rbuf.head

    @property
    def buffer_size(self):
        return self._ep().rbuf.limit

    @property
    def monitored(self):
        return not (self._ep().flags & MOS_EPF_UNMON)

    def __repr__(self):
        return f"<Endpoint {'client' if self.side == 0 else 'server'} {self.state.name}>"
