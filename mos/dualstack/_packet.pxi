# Packet: the read-only view of the packet behind an event, and its
# in-line edits (included by _engine.pyx; fields in _engine.pxd).

cdef class Packet:
    """Read-only view of the packet behind the current event.

    Valid only during the callback that received it (the burst's frames are
    reused afterwards); copy what you need to keep."""

    cdef const mos_pkt_t *_p(self) except NULL:
        if self.serial != self.eng.serial:
            raise RuntimeError("this Packet view outlived its callback")
        return mos_engine_pkt(self.eng.e, self.idx)

    @property
    def ts(self):
        """Capture time in seconds."""
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).ts_ns / 1e9

    @property
    def ts_ns(self):
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).ts_ns

    @property
    def number(self):
        """1-based number of this frame among those the engine was fed (on a
        capture: its position in the file, Suricata's ``pcap_cnt``)."""
        self._p()
        return self.eng._burst_base + self.idx + 1

    @property
    def ipver(self):
        return self._p().ipver

    @property
    def src(self):
        cdef const mos_pkt_t *p = self._p()
        return _addr(p.ipver, p.src)

    @property
    def dst(self):
        cdef const mos_pkt_t *p = self._p()
        return _addr(p.ipver, p.dst)

    @property
    def sport(self):
        return self._p().sport

    @property
    def dport(self):
        return self._p().dport

    @property
    def seq(self):
        return self._p().seq

    @property
    def ack(self):
        return self._p().ack

    @property
    def flags(self):
        """TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20)."""
        return self._p().flags

    @property
    def flag_names(self):
        cdef uint8_t f = self._p().flags
        return "".join(n for b, n in ((0x02, "S"), (0x10, "A"), (0x01, "F"), (0x04, "R"),
                                      (0x08, "P"), (0x20, "U"), (0x40, "E"), (0x80, "C")) if f & b)

    @property
    def window(self):
        return self._p().win

    @property
    def payload(self):
        """Captured TCP payload bytes (a copy)."""
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.payload, p.paylen)

    @property
    def payload_len(self):
        """Payload length per the IP header (may exceed len(payload) in a snapped capture)."""
        return self._p().seglen

    @property
    def ip_header(self):
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.l3, p.l3hlen)

    @property
    def tcp_header(self):
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.l4, p.thlen)

    @property
    def datagram(self):
        """The IP datagram as decoded (a copy): for one reassembled from
        fragments, the whole reassembled datagram."""
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.l3, p.l3len)

    @property
    def reassembled(self):
        """True if the datagram was reassembled from IP fragments."""
        cdef const mos_pkt_t *p = self._p()
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        return not (fr.data <= p.l3 < fr.data + fr.caplen)

    @property
    def frame(self):
        """The whole captured frame (a copy)."""
        self._p()
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        return PyBytes_FromStringAndSize(<const char *>fr.data, fr.caplen)

    @property
    def options(self):
        cdef const mos_pkt_t *p = self._p()
        d = {}
        if p.opts & MOS_OPT_MSS: d["mss"] = p.mss
        if p.opts & MOS_OPT_WSCALE: d["wscale"] = p.wscale
        if p.opts & MOS_OPT_SACKOK: d["sack_permitted"] = True
        if p.opts & MOS_OPT_TS: d["timestamp"] = (p.tsval, p.tsecr)
        if p.opts & MOS_OPT_SACK: d["sack"] = [(p.sack[2 * i], p.sack[2 * i + 1]) for i in range(p.nsack)]
        return d

    @property
    def l2len(self):
        """Bytes of link-layer header (Ethernet, VLAN tags, MPLS labels)."""
        return self._p().l2len

    @property
    def linktype(self):
        """The frame's link type (1 Ethernet, 228 raw IPv4, ...)."""
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).linktype

    @property
    def iface(self):
        """Index of the port the packet arrived on."""
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).iface

    def drop(self):
        """Do not forward this packet (in-line ports; a no-op when passive)."""
        self._p()
        mos_engine_verdicts(self.eng.e)[self.idx] = MOS_VERDICT_DROP

    @property
    def dropped(self):
        self._p()
        return mos_engine_verdicts(self.eng.e)[self.idx] == MOS_VERDICT_DROP

    cdef bytes _outgoing(self, where, mos_pkt_t *q, Py_ssize_t *base, Py_ssize_t *limit):
        """The bytes to forward so far (earlier edits included), decoded into
        q, and where the region ``where`` lies in them."""
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        cur = self.eng._modified.get(self.idx)
        cdef bytes data = cur if cur is not None else PyBytes_FromStringAndSize(
            <const char *>fr.data, fr.caplen)
        cdef const uint8_t *d = <const uint8_t *>PyBytes_AS_STRING(data)
        if where not in ("payload", "tcp", "ip", "frame"):
            raise ValueError(f"where must be 'payload', 'tcp', 'ip' or 'frame', not {where!r}")
        if where == "frame":
            base[0], limit[0] = 0, len(data)
            return data
        if mos_decode(fr.linktype, d, len(data), q) != MOS_DEC_TCP:
            raise ValueError("the packet was reassembled from IP fragments (or is not whole "
                             "in its frame): edit it with where='frame'")
        if where == "payload":
            base[0], limit[0] = q.payload - d, q.paylen
        elif where == "tcp":
            base[0], limit[0] = q.l4 - d, q.thlen
        else:
            base[0], limit[0] = q.l3 - d, q.l3hlen
        return data

    def overwrite(self, Py_ssize_t offset, data, where="payload"):
        """Replace len(data) bytes at ``offset`` of the payload (or of the
        "tcp" header, the "ip" header, the whole "frame") in what is forwarded;
        IPv4 and TCP checksums are recomputed.  The monitor's own streams keep
        the bytes as received."""
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        cdef mos_pkt_t q
        cdef Py_ssize_t base, limit
        self._p()
        data = bytes(data)
        cur = self._outgoing(where, &q, &base, &limit)
        if offset < 0 or offset + len(data) > limit:
            raise ValueError(f"overwrite of {len(data)} bytes at {where} offset {offset} "
                             f"does not fit in {limit} bytes")
        buf = bytearray(cur)
        buf[base + offset: base + offset + len(data)] = data
        self.eng._modified[self.idx] = fix_checksums(bytes(buf), fr.linktype)

    def replace(self, Py_ssize_t offset, Py_ssize_t length, data, where="payload"):
        """Forward ``data`` in place of the ``length`` bytes at ``offset``
        (lengths may differ) of the payload, or of the "tcp" header, the "ip"
        header or the whole "frame".

        In the payload, the flow's later packets are translated both ways as
        they are sent: sequence numbers towards the receiver,
        acknowledgements and SACK blocks back to the sender, so each end
        keeps its own numbering; a retransmission of these bytes is edited
        again the same way.  Only bytes this packet sends for the first time
        can change (an edit of bytes the receiver has acknowledged does
        nothing: it drops that copy anyway).  A segment grown past the IP
        MTU (``engine.mtu``, 1500) or the receiver's MSS leaves in several.
        Offsets are in this packet's payload as received; the monitor's
        streams and numbers stay the sender's.  Where nothing is forwarded
        (passive ports, a capture file without ``--write``) a payload edit
        does nothing, as drop() does.

        In a header, this packet alone changes: the TCP data offset, the
        IPv4 header length and the IP length fields follow (a TCP or IPv4
        header stays a multiple of 4 bytes, 20 to 60).  "frame" edits raw
        bytes (a VLAN tag, say) and only the checksums are fixed.

        Raises ValueError saying why an edit cannot be made (a retransmitted
        range, overlap with an earlier edit, over 64 KiB, no flow...).

        >>> def on_request(flow, side, event):              # doctest: +SKIP
        ...     pkt = flow.packet
        ...     i = pkt.payload.find(b"Accept: */*")
        ...     if i >= 0:
        ...         pkt.replace(i, 11, b"Accept: text/html")
        """
        cdef const mos_pkt_t *p = self._p()
        cdef bytes ins = bytes(data)
        cdef char err[256]
        if offset < 0 or length < 0 or offset > 0xffffffff or length > 0xffffffff:
            raise ValueError(f"offset {offset} and length {length} must be >= 0")
        if where != "payload":
            self._edit_header(offset, length, ins, where)
            return
        if not self.eng._forwards(mos_engine_frame(self.eng.e, self.idx).iface):
            return  # passive, or a capture file: nothing is sent, the numbers stay
        if mos_engine_edit(self.eng.e, self.idx, <uint32_t>offset, <uint32_t>length,
                           <const uint8_t *>PyBytes_AS_STRING(ins), <uint32_t>len(ins),
                           err, sizeof(err)) != 0:
            raise ValueError(err.decode())

    cdef _edit_header(self, Py_ssize_t offset, Py_ssize_t length, bytes ins, where):
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        cdef mos_pkt_t q
        cdef Py_ssize_t base, limit, delta = len(ins) - length, l3, l4, hl
        cur = self._outgoing(where, &q, &base, &limit)
        if offset > limit or length > limit - offset:
            raise ValueError(f"bytes [{offset}, {offset + length}) are not inside the "
                             f"{limit}-byte {where}" + ("" if where == "frame" else " header"))
        buf = bytearray(cur)
        buf[base + offset: base + offset + length] = ins
        if where in ("tcp", "ip"):
            l3 = q.l3 - q.l2
            l4 = q.l4 - q.l2
            if where == "tcp":
                hl = q.thlen + delta
                if hl % 4 or not 20 <= hl <= 60:
                    raise ValueError(f"the TCP header would be {hl} bytes: it must be a "
                                     "multiple of 4 from 20 to 60")
                buf[l4 + 12] = ((hl // 4) << 4) | (buf[l4 + 12] & 0x0F)
            elif q.ipver == 4:
                hl = q.l3hlen + delta
                if hl % 4 or not 20 <= hl <= 60:
                    raise ValueError(f"the IPv4 header would be {hl} bytes: it must be a "
                                     "multiple of 4 from 20 to 60")
                buf[l3] = (buf[l3] & 0xF0) | (hl // 4)
            elif offset < 40:
                raise ValueError("IPv6: only extension headers (ip offset 40 on) can change "
                                 "length")
            if q.l3len + delta > max(<Py_ssize_t>self.eng.mtu, <Py_ssize_t>q.l3len):
                raise ValueError(f"the packet would grow to a {q.l3len + delta}-byte IP "
                                 f"datagram, over the {self.eng.mtu}-byte limit (MTU)")
            if q.ipver == 4:
                buf[l3 + 2: l3 + 4] = (q.l3len + delta).to_bytes(2, "big")
            else:
                buf[l3 + 4: l3 + 6] = (q.l3len - 40 + delta).to_bytes(2, "big")
        self.eng._modified[self.idx] = fix_checksums(bytes(buf), fr.linktype)

    def insert(self, Py_ssize_t offset, data, where="payload"):
        """Forward ``data`` inserted before byte ``offset`` of the payload (or
        of a header; ``offset`` = its length appends): see replace()."""
        self.replace(offset, 0, data, where)

    def chomp(self, Py_ssize_t offset, Py_ssize_t length, where="payload"):
        """Forward the payload (or a header) without ``length`` bytes at
        ``offset``: see replace()."""
        self.replace(offset, length, b"", where)

    def __repr__(self):
        try:
            return (f"<Packet {self.src}:{self.sport} > {self.dst}:{self.dport} "
                    f"[{self.flag_names}] seq={self.seq} ack={self.ack} len={self.payload_len}>")
        except RuntimeError:
            return "<Packet (expired)>"
