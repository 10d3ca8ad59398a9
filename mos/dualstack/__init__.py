"""The monitor's core (DESIGN.md 1): the flow table with two TCP endpoint
models per flow, their receive buffers, in-line edits and event recording,
compiled (engine.c) with Cython views over it (_engine.pyx).  Sans-I/O: it
is fed frames and times and never reads a clock, a socket or a file."""
