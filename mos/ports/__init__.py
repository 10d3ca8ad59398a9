"""Packet ports: where frames enter and leave mos.

Every port follows native/port.h: ``c_port() -> (handle, rx, rx_done, tx)``,
addresses the engine's forwarding loop calls without Python in between.
Drivers are imported from their own modules (``mos.ports.dpdk``) so that a
missing optional library never breaks ``import mos``.
"""
