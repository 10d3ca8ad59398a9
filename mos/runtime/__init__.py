"""The runtime: everything that touches time and I/O around the engine.

The engine (mos.dualstack) is sans-I/O: it is fed (frames, timestamp) and
asked when it next needs the time (``next_deadline``).  The runtime owns
the rest:

  _loop.pyx   the compiled port loop (rx bursts, forwarding through the
              engine, idle polling, the wall clock for live ports) and
              capture files as ports: CaptureReader (rx) and PcapWriter (tx)
              over native/pcapport.c
  capture.py  run a capture file through an engine, optionally as an
              in-line box writing what it forwards (``mos run --write``)
  ports.py    the port factory: a settings ``ports:`` entry -> port object
  workers.py  worker processes (AF_PACKET) and threads (DPDK) that run
              ports from a settings file (``mos run -c``)
  apps.py     loading an ``--app`` module

Layers, top to bottom: mos.cli, then mos.engine (the public Engine), then
mos.runtime, then mos.monitor / mos.events, then mos.dualstack, then
native/.  Nothing here imports mos.cli or mos.engine.
"""
