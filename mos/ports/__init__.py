"""Packet ports: where frames enter and leave mos.

Every port follows native/port.h: ``c_port() -> (handle, rx, rx_done, tx)``,
addresses the runtime's port loop (mos.runtime._loop) calls without Python
in between.  Capture files are ports too: mos.runtime._loop.CaptureReader
and PcapWriter (native/pcapport.c).
Drivers are imported from their own modules (``mos.ports.dpdk``) so that a
missing optional library never breaks ``import mos``.

Drivers:
  afpacket  ``mos.ports._afpacket.AfPacketPort(iface, fanout_group=None,
            ring_bytes=4 << 20, poll_ms=1)``: a Linux interface through a
            TPACKET_V3 rx ring (fanout group for several workers) and a
            TPACKET_V2 tx ring; needs CAP_NET_RAW (native/afpacket.c).
  dpdk      ``mos.ports.dpdk.DpdkPort``: a DPDK ethdev (NIC or --vdev), when
            mos was built with libdpdk (native/dpdk/).
"""
