"""asyncio programs on mos's stack against Linux, in the test bed: the
stack owns 198.18.0.2 and 2001:db8::2 on c1 (AF_PACKET); a streams echo
server and an aiohttp application, each an ordinary asyncio program but
for how its loop is made, serve Linux clients in the client namespace
(curl, ab, wrk, Python sockets).  Everything the tests start goes when
they end, also on failure."""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from netbed import live_skip_reason

from mos.testing.testbed import SERVER_IP, SERVER_IP6

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _why_not():
    why = live_skip_reason("ip", "ethtool", "curl", "ab")
    if why is None:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return "needs aiohttp"
    return why


WHY = _why_not()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"asyncio live tests: {WHY}")

def _documented_echo() -> str:
    """mos.aio's documented echo server, as written there; only its address
    (the docs' 198.18.77.2), its config path and a line saying it serves
    are adapted to the test bed."""
    import mos.aio
    doc = mos.aio.__doc__
    code = textwrap.dedent(doc[doc.index("    import asyncio, mos.aio"):
                               doc.index("or, for code that takes a loop")])
    code = code.replace('"198.18.77.2"', '"0.0.0.0"')
    code = code.replace('config="serve.yaml"', "config=sys.argv[1]")
    code = code.replace("    async with server:", '    print("serving", flush=True)\n'
                                                  "    async with server:")
    assert "config=sys.argv[1]" in code and '"serving"' in code, code
    return "import sys\n" + code


ECHO = _documented_echo()

WEB = """
import sys
from aiohttp import web
import mos.aio

async def hello(request):
    return web.Response(text="hello from aiohttp on mos\\n")

async def echo(request):
    return web.Response(body=await request.read())

async def small(request):
    return web.Response(body=b"x" * 64)

app = web.Application(client_max_size=16 << 20)
app.router.add_get("/", hello)
app.router.add_get("/small", small)
app.router.add_post("/echo", echo)
app.router.add_static("/files", sys.argv[2])
web.run_app(app, host="0.0.0.0", port=8080, print=lambda *a: print(*a, flush=True),
            loop=mos.aio.new_event_loop(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def bed():
    from mos.testing.testbed import Testbed
    with Testbed() as tb:
        yield tb


def _start(tb, tmp_path, program: str, *args, ready: bytes):
    cfg = tmp_path / "endhost.yaml"
    cfg.write_text(f"mode: endhost\nports:\n  - {{name: wire, driver: afpacket, iface: {tb.c1}}}\n"
                   f"endhost:\n  addresses: [{{port: wire, address: {SERVER_IP}/24}}, "
                   f"{{port: wire, address: '{SERVER_IP6}/64'}}]\n")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(program))
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-u", str(script), str(cfg), *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    end, seen = time.monotonic() + 60, b""
    while time.monotonic() < end:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            seen += line
            if ready in line:
                return proc
            if not line and proc.poll() is not None:
                break
    proc.kill()
    proc.wait()
    raise AssertionError(f"the program did not start: {seen.decode(errors='replace')[-2000:]}")


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _in_client(tb, *cmd, timeout=120, input=None):
    return subprocess.run(["ip", "netns", "exec", tb.client_ns, *cmd], capture_output=True,
                          timeout=timeout, input=input)


CLIENT = """
import hashlib, os, socket, sys, threading
host, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = []
def one(i):
    data = os.urandom(size + i)
    with socket.create_connection((host, 7), timeout=60) as s:
        t = threading.Thread(target=s.sendall, args=(data,)); t.start()
        got = bytearray()
        while len(got) < len(data):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        t.join()
        s.shutdown(socket.SHUT_WR)
        ok.append(bytes(got) == data and s.recv(1) == b"")
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in threads]; [t.join() for t in threads]
print(sum(ok), "of", n)
"""


@pytest.mark.parametrize("host", [SERVER_IP, SERVER_IP6], ids=["ipv4", "ipv6"])
def test_streams_echo_server_serves_linux_clients(bed, tmp_path, host):
    proc = _start(bed, tmp_path, ECHO, ready=b"serving")
    try:
        p = _in_client(bed, sys.executable, "-c", CLIENT, host, "20", str(200_000))
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.decode().split() == ["20", "of", "20"]
        p = _in_client(bed, sys.executable, "-c", CLIENT, host, "1", str(8 << 20))
        assert p.stdout.decode().split() == ["1", "of", "1"], p.stderr.decode()
    finally:
        _stop(proc)


def test_aiohttp_application_serves_curl_ab_and_wrk(bed, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    blob = os.urandom(5 << 20)
    (files / "blob").write_bytes(blob)
    proc = _start(bed, tmp_path, WEB, str(files), ready=b"Running on")
    try:
        p = _in_client(bed, "curl", "-sS", "--max-time", "30", f"http://{SERVER_IP}:8080/")
        assert p.stdout == b"hello from aiohttp on mos\n", p.stderr.decode()
        for url in (f"http://{SERVER_IP}:8080/files/blob", f"http://[{SERVER_IP6}]:8080/files/blob"):
            p = _in_client(bed, "curl", "-sS", "-g", "--max-time", "60", url)
            assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(blob).digest(), \
                (url, p.stderr.decode())
        body = os.urandom(3 << 20)
        p = _in_client(bed, "curl", "-sS", "--max-time", "60", "--data-binary", "@-",
                       "-H", "Content-Type: application/octet-stream",
                       f"http://{SERVER_IP}:8080/echo", input=body)
        assert p.stdout == body, p.stderr.decode()
        p = _in_client(bed, "ab", "-n", "2000", "-c", "20", "-k", f"http://{SERVER_IP}:8080/small",
                       timeout=180)
        out = p.stdout.decode()
        assert re.search(r"Complete requests:\s+2000", out), out + p.stderr.decode()
        assert re.search(r"Failed requests:\s+0", out), out
        print("  ab -n 2000 -c 20 -k against aiohttp on mos:",
              re.findall(r"Requests per second:.*", out))
        if shutil.which("wrk"):
            p = _in_client(bed, "wrk", "-t", "1", "-c", "50", "-d", "2s",
                           f"http://{SERVER_IP}:8080/small", timeout=60)
            out = p.stdout.decode()
            assert "Socket errors" not in out and "Non-2xx" not in out, out
            assert int(re.search(r"(\d+) requests in", out).group(1)) > 100, out
            print("  wrk -c 50 against aiohttp on mos:", re.findall(r"Requests/sec:.*", out))
    finally:
        _stop(proc)
