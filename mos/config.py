"""The engine's options (``mos.Config``); defined with the engine in
``mos.dualstack.config``, re-exported here as part of the public API."""

from mos.dualstack.config import MAX_BUFFER, Config

__all__ = ["MAX_BUFFER", "Config"]
