"""The end host: mos's own TCP/IP stack (stack.c on mos/tcp/host.c), so
servers and clients terminate TCP on the same stack the monitor uses.
``mos.endhost._stack.Stack`` is the sans-I/O core (frames in and out);
sockets, epoll, asyncio and the ports build on it."""
