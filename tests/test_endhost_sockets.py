"""Sockets and epoll on mos's own stack (mos/endhost/sockets.py), stacks on
an in-memory switch with virtual time: blocking and non-blocking calls,
the socket module's exceptions, level- and edge-triggered epoll, an epoll
echo server with many clients, IPv6."""

from __future__ import annotations

import errno

import pytest

from mos.endhost import sockets as S
from mos.endhost.sockets import (EPOLLET, EPOLLIN, EPOLLOUT, AF_INET6, Context, Switch)


def net(**kw):
    sw = Switch()
    srv = Context.on(sw, "198.18.0.2/24", "2001:db8::2/64", **kw)
    cli = Context.on(sw, "198.18.0.1/24", "2001:db8::1/64", **kw)
    return sw, srv, cli


def server(ctx, port=8080, family=S.AF_INET, backlog=64):
    ls = ctx.socket(family)
    ls.bind(("::" if family == AF_INET6 else "0.0.0.0", port))
    ls.listen(backlog)
    return ls


def connected(**kw):
    """(switch, client socket, accepted server socket) over IPv4, connected."""
    sw, srv, cli = net(**kw)
    ls = server(srv)
    c = cli.socket()
    c.connect(("198.18.0.2", 8080))
    s, _ = ls.accept()
    return sw, c, s


def test_doctest():
    import doctest
    res = doctest.testmod(S)
    assert res.attempted and not res.failed


@pytest.mark.parametrize("family,host", [(S.AF_INET, "198.18.0.2"), (AF_INET6, "2001:db8::2")])
def test_request_and_response_with_blocking_sockets(family, host):
    sw, srv, cli = net()
    ls = server(srv, family=family)
    c = cli.socket(family)
    c.connect((host, 8080))
    s, peer = ls.accept()
    assert c.getpeername() == (host, 8080) and s.getsockname() == (host, 8080)
    assert peer == c.getsockname()
    body = bytes(range(256)) * 4000          # 1 MB: flow control and many segments
    c.sendall(b"GET /x\r\n\r\n")
    assert s.recv(100) == b"GET /x\r\n\r\n"
    # one thread plays both ends: the server writes what fits, the client
    # reads what came (a blocking sendall of 1 MB to a peer that does not
    # read would wait for ever, as on any stack)
    s.setblocking(False)
    got = bytearray()
    off = 0
    while off < len(body):
        try:
            off += s.send(body[off:off + 65536])
        except BlockingIOError:
            pass
        got += c.recv(65536)
    s.shutdown(S.SHUT_WR)
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
    assert bytes(got) == body
    c.close()
    s.close()
    ls.close()
    sw.run(advance=True)
    assert cli.stack.stats()["conns"] <= 1    # the client may sit in TIME-WAIT


def test_connect_to_a_closed_port_raises_connection_refused():
    sw, srv, cli = net()
    c = cli.socket()
    with pytest.raises(ConnectionRefusedError) as e:
        c.connect(("198.18.0.2", 9))
    assert e.value.errno == errno.ECONNREFUSED
    assert c.connect_ex(("198.18.0.2", 9)) == errno.ECONNREFUSED


def test_connect_to_a_silent_address_times_out():
    sw, srv, cli = net(syn_retries=2)
    c = cli.socket()
    with pytest.raises(TimeoutError) as e:
        c.connect(("198.18.0.99", 80))
    assert e.value.errno == errno.ETIMEDOUT


def test_peer_reset_surfaces_as_connection_reset():
    sw, c, s = connected()
    s.abort()
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    with pytest.raises(ConnectionResetError):
        c.send(b"x")


def test_non_blocking_calls_raise_blocking_io_error():
    sw, srv, cli = net()
    ls = server(srv)
    ls.setblocking(False)
    with pytest.raises(BlockingIOError):
        ls.accept()
    c = cli.socket()
    c.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        c.connect(("198.18.0.2", 8080))
    assert e.value.errno == errno.EINPROGRESS
    sw.run()
    assert c.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0
    s, _ = ls.accept()
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(10)
    s.settimeout(0.5)
    with pytest.raises(TimeoutError):
        s.recv(10)                           # half a second of virtual time, no data


def test_epoll_level_and_edge_triggered():
    sw, srv, cli = net()
    ls = server(srv)
    c = cli.socket()
    c.connect(("198.18.0.2", 8080))
    s, _ = ls.accept()
    lt, et = srv.epoll(), srv.epoll()
    lt.register(s.fileno(), EPOLLIN)
    et.register(s.fileno(), EPOLLIN | EPOLLET)
    c.sendall(b"abc")
    assert lt.poll(1) == [(s.fileno(), EPOLLIN)]
    assert et.poll(1) == [(s.fileno(), EPOLLIN)]
    assert lt.poll(0) == [(s.fileno(), EPOLLIN)]     # level: still readable
    assert et.poll(0) == []                          # edge: reported once
    assert s.recv(10) == b"abc"
    assert lt.poll(0) == []
    with pytest.raises(FileExistsError):
        lt.register(s.fileno(), EPOLLIN)
    lt.modify(s.fileno(), EPOLLOUT)
    assert lt.poll(0) == [(s.fileno(), EPOLLOUT)]
    lt.unregister(s.fileno())
    with pytest.raises(FileNotFoundError):
        lt.unregister(s.fileno())


def test_epoll_echo_server_with_two_hundred_clients():
    sw, srv, cli = net()
    ls = server(srv, backlog=256)
    ls.setblocking(False)
    ep = srv.epoll()
    ep.register(ls.fileno(), EPOLLIN)
    conns = {}
    clients = []
    for i in range(200):
        c = cli.socket()
        c.setblocking(False)
        try:
            c.connect(("198.18.0.2", 8080))
        except BlockingIOError:
            pass
        clients.append(c)
    sw.run()
    for k, c in enumerate(clients):
        c.setblocking(True)
        c.sendall(f"client {k}\n".encode())
    answered = {}
    for _ in range(10_000):
        for fd, ev in ep.poll(1):
            if fd == ls.fileno():
                while True:
                    try:
                        s, _ = ls.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    conns[s.fileno()] = s
                    ep.register(s.fileno(), EPOLLIN)
            else:
                s = conns[fd]
                data = s.recv(4096)
                if data:
                    s.sendall(data.upper())
        for k, c in enumerate(clients):
            if k not in answered:
                c.setblocking(False)
                try:
                    answered[k] = c.recv(100)
                except BlockingIOError:
                    pass
        if len(answered) == len(clients):
            break
    assert answered == {k: f"CLIENT {k}\n".encode() for k in range(200)}
    assert srv.stack.stats()["syn_dropped"] == 0


def test_mos_serve_refuses_bad_settings_with_file_line_and_key(tmp_path):
    import subprocess
    import sys
    repo = __import__("os").path.dirname(__import__("os").path.dirname(__file__))

    def serve(cfg_text, root):
        cfg = tmp_path / "s.yaml"
        cfg.write_text(cfg_text)
        return subprocess.run([sys.executable, "-m", "mos", "serve", "-c", str(cfg), "--root",
                               str(root)], capture_output=True, text=True, cwd=repo, timeout=60)
    good = ("mode: endhost\nports:\n  - {name: wire, driver: afpacket, iface: nosuch0}\n"
            "endhost:\n  addresses: [{port: wire, address: 198.18.77.2/24}]\n")
    p = serve(good.replace("mode: endhost", "mode: passive").split("endhost:")[0], tmp_path)
    assert p.returncode == 2 and "s.yaml:1: mode: mos serve needs mode: endhost" in p.stderr
    p = serve(good, tmp_path / "nope")
    assert p.returncode == 2 and "--root" in p.stderr and "not a directory" in p.stderr
    p = serve(good, tmp_path)
    assert p.returncode == 2 and "s.yaml:3: ports[wire].iface: cannot open nosuch0" in p.stderr
    assert "Traceback" not in p.stderr


def pump_through(s, c, data, want=None) -> bytes:
    """Write ``data`` on non-blocking ``s`` as it takes it while reading
    ``want`` bytes (default len(data)) from ``c``."""
    want = len(data) if want is None else want
    got, view = bytearray(), memoryview(data)
    c.settimeout(5)
    while len(got) < want:
        if view:
            try:
                view = view[s.send(view):]
            except BlockingIOError:
                pass
        got += c.recv(65536)
    return bytes(got)


def test_so_rcvbuf_before_connect_bounds_the_window_and_data_still_flows():
    sw, srv, cli = net()
    ls = server(srv)
    c = cli.socket()
    c.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4096)
    c.connect(("198.18.0.2", 8080))
    s, _ = ls.accept()
    assert c.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == 4096
    assert c.ctx.stack.state(c._sock) == "ESTABLISHED"
    data = bytes(range(256)) * 4000           # 1 MB through a 4 KB window
    s.setblocking(False)
    assert pump_through(s, c, data) == data
    assert c.ctx.stack.stats()["tcp_in"] < 100_000


def test_a_listeners_so_sndbuf_goes_to_the_connections_it_accepts():
    sw, srv, cli = net()
    ls = srv.socket()
    ls.bind(("0.0.0.0", 8080))
    ls.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 8192)
    ls.listen(8)
    c = cli.socket()
    c.connect(("198.18.0.2", 8080))
    s, _ = ls.accept()
    assert s.getsockopt(S.SOL_SOCKET, S.SO_SNDBUF) == 8192
    s.setblocking(False)
    assert s.send(b"x" * 100_000) == 8192      # the buffer takes 8 KB, no more
    with pytest.raises(OSError, match="buffer size"):
        s.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 0)


def test_so_sndbuf_grows_with_queued_bytes_kept_in_order():
    sw, srv, cli = net()
    ls = server(srv)
    ls.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    c = cli.socket()
    c.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4096)
    c.connect(("198.18.0.2", 8080))
    s, _ = ls.accept()
    s.setblocking(False)
    data = bytes((i * 7) & 255 for i in range(300_000))
    sent = s.send(data)                       # the ring is full and wrapped soon
    got = bytearray(c.recv(1000))
    s.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 1 << 20)   # grows while holding bytes
    assert s.getsockopt(S.SOL_SOCKET, S.SO_SNDBUF) == 1 << 20
    assert bytes(got) + pump_through(s, c, memoryview(data)[sent:], len(data) - len(got)) == data


def test_so_rcvbuf_grows_after_the_handshake_but_never_shrinks():
    sw, srv, cli = net()
    ls = server(srv)
    c = cli.socket()
    c.connect(("198.18.0.2", 8080))
    ls.accept()
    before = c.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF)
    c.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, before * 2)
    assert c.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == before * 2
    c.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 1024)       # a window does not retract
    assert c.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == before * 2


def test_fionread_and_siocoutq_count_the_bytes_waiting():
    sw, c, s = connected()
    assert s.ioctl(S.FIONREAD) == 0
    c.setblocking(False)                        # no pump: it waits for the next poll
    assert c.send(b"x" * 5000) == 5000
    assert c.ioctl(S.SIOCOUTQ) == 5000          # nothing acknowledged yet
    s.settimeout(5)
    s.ctx.wait_for(lambda: s.ioctl(S.FIONREAD) == 5000, 5)
    assert s.ioctl(S.FIONREAD) == 5000
    assert len(s.recv(1000)) == 1000 and s.ioctl(S.FIONREAD) == 4000
    assert c.ioctl(S.SIOCOUTQ) == 0             # all acknowledged by now
    with pytest.raises(OSError, match="FIONREAD"):
        s.ioctl(0x1234)
