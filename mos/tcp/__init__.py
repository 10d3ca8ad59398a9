"""TCP itself, for both roles (the monitor's passive endpoint models and the
end host's active endpoints): endpoint variables, the one transition table,
sequence arithmetic, options, the receive buffer and sequence maps.  C,
sans-I/O (see README.md here); _tcp and _stream expose it to tests."""
