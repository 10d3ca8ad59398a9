"""Application-layer parsers, as compiled stream consumers (Engine.add_consumer)
that raise first-class events for apps: ``mos.app.http``."""
