"""asyncio on mos's stack, in memory (mos.endhost.aio): two stacks on a
Switch, one loop over both.  Plain asyncio code (streams, protocols,
sock_* calls, an aiohttp application) runs unchanged; errors are the
socket module's; kernel fds work beside mos sockets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import threading

import pytest

from mos.endhost import aio
from mos.endhost.sockets import FD_BASE, Context, Switch


@pytest.fixture
def pair():
    net = Switch()
    srv = Context.on(net, "198.18.0.2/24", "2001:db8::2/64")
    cli = Context.on(net, "198.18.0.1/24", "2001:db8::1/64")
    return srv, cli


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("host", ["198.18.0.2", "2001:db8::2"])
def test_streams_echo_with_many_clients_is_exact(pair, host):
    async def one(i):
        reader, writer = await asyncio.open_connection(host, 7)
        data = os.urandom(1000 + 997 * i)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        back = await reader.read()
        writer.close()
        return hashlib.sha256(back).digest() == hashlib.sha256(data).digest()

    async def main():
        server = await asyncio.start_server(_echo, host, 7)
        async with server:
            return await asyncio.gather(*(one(i) for i in range(40)))
    assert all(aio.run(main(), *pair))


def test_a_large_transfer_keeps_every_byte(pair):
    data = os.urandom(4 << 20)

    async def send_all(reader, writer):
        writer.write(data)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(send_all, "198.18.0.2", 80)
        async with server:
            reader, writer = await asyncio.open_connection("198.18.0.2", 80)
            got = await reader.read()
            writer.close()
            return got
    assert aio.run(main(), *pair) == data


def test_sock_methods_on_mos_sockets(pair):
    srv, cli = pair

    async def main():
        loop = asyncio.get_running_loop()
        ls = srv.socket()
        ls.bind(("198.18.0.2", 9000))
        ls.listen(8)
        ls.setblocking(False)
        c = cli.socket()
        c.setblocking(False)
        await loop.sock_connect(c, ("198.18.0.2", 9000))
        s, peer = await loop.sock_accept(ls)
        assert peer[0] == "198.18.0.1" and s.fileno() >= FD_BASE
        s.setblocking(False)
        await loop.sock_sendall(c, b"x" * 300_000)
        buf = bytearray(300_000)
        got = 0
        while got < len(buf):
            got += await loop.sock_recv_into(s, memoryview(buf)[got:])
        await loop.sock_sendall(s, b"pong")
        reply = await loop.sock_recv(c, 10)
        for x in (c, s, ls):
            x.close()
        return bytes(buf) == b"x" * 300_000, reply
    assert aio.run(main(), *pair) == (True, b"pong")


def test_protocols_and_transports(pair):
    class Upper(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport

        def data_received(self, data):
            self.t.write(data.upper())

        def eof_received(self):
            self.t.close()

    class Collect(asyncio.Protocol):
        def __init__(self):
            self.buf = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def data_received(self, data):
            self.buf += data

        def connection_lost(self, exc):
            self.done.set_result(bytes(self.buf))

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upper, "198.18.0.2", 8000)
        t, p = await loop.create_connection(Collect, "198.18.0.2", 8000)
        assert t.get_extra_info("peername") == ("198.18.0.2", 8000)
        assert t.get_extra_info("sockname")[0] == "198.18.0.1"
        t.write(b"hello ")
        t.write(b"world")
        t.write_eof()
        out = await p.done
        server.close()
        await server.wait_closed()
        return out
    assert aio.run(main(), *pair) == b"HELLO WORLD"


def test_errors_are_the_socket_modules(pair):
    srv, cli = pair

    async def refused():
        await asyncio.open_connection("198.18.0.2", 1)

    async def silent():           # nobody has the address: the SYNs go unanswered
        await asyncio.open_connection("198.18.0.77", 80)

    async def reset():
        async def rude(reader, writer):
            await reader.read(1)
            # a zero linger time: close() resets the connection
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        server = await asyncio.start_server(rude, "198.18.0.2", 81)
        async with server:
            reader, writer = await asyncio.open_connection("198.18.0.2", 81)
            writer.write(b"x")
            await writer.drain()
            await reader.read(100)

    async def names():
        await asyncio.open_connection("server.example", 80)

    with pytest.raises(ConnectionRefusedError):
        aio.run(refused(), srv, cli)
    with pytest.raises(TimeoutError):
        aio.run(silent(), srv, cli)
    with pytest.raises(ConnectionResetError):
        aio.run(reset(), srv, cli)
    with pytest.raises(OSError, match="resolves no names"):
        aio.run(names(), srv, cli)


def test_kernel_fds_timers_and_threads_work_beside_the_stack(pair):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        got = loop.create_future()
        loop.add_reader(r, lambda: got.set_result(os.read(r, 10)))
        threading.Timer(0.05, lambda: os.write(w, b"kernel")).start()
        woke = loop.create_future()
        threading.Timer(0.05, lambda: loop.call_soon_threadsafe(woke.set_result, 1)).start()
        t0 = loop.time()
        await asyncio.sleep(0.1)
        slept = loop.time() - t0
        out = await asyncio.wait_for(got, 5), await asyncio.wait_for(woke, 5)
        loop.remove_reader(r)
        os.close(r)
        os.close(w)
        return out, slept
    (data, woke), slept = aio.run(main(), *pair)
    assert data == b"kernel" and woke == 1 and 0.09 <= slept < 2


def test_policy_makes_asyncio_run_use_the_stack(pair):
    async def main():
        server = await asyncio.start_server(_echo, "198.18.0.2", 7)
        async with server:
            reader, writer = await asyncio.open_connection("198.18.0.2", 7)
            writer.write(b"via policy\n")
            line = await reader.readline()
            writer.close()
            return type(asyncio.get_running_loop()).__name__, line
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(aio.EventLoopPolicy(*pair))
    try:
        assert asyncio.run(main()) == ("EventLoop", b"via policy\n")
    finally:
        asyncio.set_event_loop_policy(old)


def test_an_aiohttp_application_runs_unchanged(pair):
    web = pytest.importorskip("aiohttp.web")
    blob = os.urandom(300_000)

    async def hello(request):
        return web.Response(text=f"hello {request.match_info['name']}")

    async def echo(request):
        return web.Response(body=await request.read())

    async def big(request):
        return web.Response(body=blob)

    async def get(reader, writer, method, path, body=b""):
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: mos\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        n = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                 if ln.lower().startswith(b"content-length"))
        return status, await reader.readexactly(n)

    async def main():
        app = web.Application()
        app.router.add_get("/hello/{name}", hello)
        app.router.add_post("/echo", echo)
        app.router.add_get("/big", big)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "198.18.0.2", 8080).start()
        try:
            reader, writer = await asyncio.open_connection("198.18.0.2", 8080)
            out = [await get(reader, writer, "GET", "/hello/mos"),
                   await get(reader, writer, "POST", "/echo", b"y" * 100_000),
                   await get(reader, writer, "GET", "/big"),
                   await get(reader, writer, "GET", "/nothing")]
            writer.close()
            return out
        finally:
            await runner.cleanup()
    hello_, echo_, big_, missing = aio.run(main(), *pair)
    assert hello_ == (200, b"hello mos")
    assert echo_ == (200, b"y" * 100_000)
    assert big_ == (200, blob)
    assert missing[0] == 404


def test_tls_over_the_stack_with_asyncios_ssl(pair, tmp_path):
    """asyncio's SSL layer runs over transports on mos sockets: a TLS echo
    with a throwaway self-signed certificate (made here)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mos.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mos.test")]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    data = os.urandom(200_000)

    async def main():
        server = await asyncio.start_server(_echo, "198.18.0.2", 443, ssl=server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection(
                "198.18.0.2", 443, ssl=client_ctx, server_hostname="mos.test")
            writer.write(data)
            await writer.drain()
            got = await reader.readexactly(len(data))
            version = writer.get_extra_info("ssl_object").version()
            writer.close()
            return got, version
    got, version = aio.run(main(), *pair)
    assert got == data and version.startswith("TLSv1.")
