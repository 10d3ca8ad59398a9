"""Fixtures for tests on the namespace test bed (DESIGN §5); import them by name:

    from netbed import http_server, testbed_fixture  # noqa: F401  (the `testbed` fixture)

The fixture function is named `testbed_fixture` so that test parameters called
`testbed` do not shadow an imported name (pyflakes F811).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from mos.testing.testbed import Testbed, available

__all__ = ["http_server", "interrupt", "live_skip_reason", "needs_testbed", "testbed_fixture",
           "wait_serving"]

_reason: list = []


def live_skip_reason(*tools: str) -> str | None:
    """Why tests on namespaces and AF_PACKET cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces, veths, AF_PACKET)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"needs {tool}"
    try:
        import mos.ports._afpacket  # noqa: F401
    except ImportError as e:
        return f"mos.ports._afpacket is not built ({e})"
    return None


def interrupt(proc: subprocess.Popen, timeout: float = 30.0) -> tuple:
    """SIGINT (a run's clean way out), then its (stdout, stderr); killed
    if it is still there after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def needs_testbed() -> None:
    """Skip the calling test, with the reason, when test beds cannot be built here."""
    if not _reason:
        _reason.append(available())
    if _reason[0] is not None:
        pytest.skip(f"namespace test bed unavailable: {_reason[0]}")


@pytest.fixture(name="testbed")
def testbed_fixture() -> Iterator[Testbed]:
    """A fresh test bed (client and server namespaces; c1/s1 in the root ns), removed after."""
    needs_testbed()
    with Testbed() as tb:
        yield tb


@contextlib.contextmanager
def http_server(tb: Testbed, root_dir, port: int = 80, lifetime: float = 300.0,
                wait: float = 10.0, ns: str | None = None) -> Iterator[subprocess.Popen]:
    """Python's http.server serving `root_dir` in namespace `ns` (the server's
    by default) on [::]:`port` (IPv4 too); returns once it listens (at most
    `wait` s), stopped on leaving."""
    ns = ns or tb.server_ns
    with tempfile.TemporaryFile() as log:
        p = tb.popen_in(ns, [sys.executable, "-m", "http.server", "--bind", "::",
                                       "--directory", str(root_dir), str(port)],
                        lifetime=lifetime, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + wait
            while True:
                r = tb.run_in(ns, ["ss", "-Hltn", f"sport = :{port}"], timeout=5)
                if r.stdout.strip():
                    break
                if p.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    why = log.read().decode(errors="replace").strip()[-2000:]
                    raise RuntimeError(f"http.server on port {port} did not start "
                                       f"(exit {p.poll()}): {why}")
                time.sleep(0.05)
            yield p
        finally:
            tb.stop(p)


def wait_serving(proc, timeout=60.0):
    """Until `mos serve` says it serves (its stack is up), or fail with its stderr."""
    end = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if line.startswith(b"mos serve:"):
                return
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"mos serve did not start: {seen.decode(errors='replace')[-2000:]}")
