"""The build: every C file compiled once, and a flow hash keyed per run.

The C core is one shared library (mos/libmos_core.so) that the Cython
extensions link, so a global such as the flow hash key exists once: before,
each extension compiled its own copy of native/*.c and a key set through
one module never reached the engine's copy.
"""
import os
import shutil
import subprocess
import sys

import pytest

import mos

PKG = os.path.dirname(mos.__file__)
CORE = os.path.join(PKG, "libmos_core.so")

# symbols the toolchain adds to every shared object
TOOLCHAIN = ("_init", "_fini", "_DYNAMIC", "_GLOBAL_OFFSET_TABLE_", "deregister_tm_clones",
             "register_tm_clones", "frame_dummy", "_edata", "_end", "__bss_start")


def built_objects():
    out = []
    for root, _dirs, files in os.walk(PKG):
        out += [os.path.join(root, f) for f in files if f.endswith(".so")]
    return sorted(out)


def defined_symbols(path):
    """Names of the functions and data `path` defines (global and local)."""
    text = subprocess.run(["nm", "--defined-only", path], capture_output=True, text=True,
                          check=True).stdout
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtDdBbRr":
            name = parts[2]
            if name in TOOLCHAIN or name.startswith(("__", "completed.")):
                continue
            names.add(name)
    return names


@pytest.fixture(scope="module")
def nm():
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")


def test_each_native_symbol_is_defined_in_one_built_object(nm):
    assert os.path.exists(CORE), "the core library was not built"
    core = defined_symbols(CORE)
    assert {"mos_decode", "mos_flow_hash", "mos_engine_process", "mos_rbuf_insert"} <= core
    for path in built_objects():
        if path == CORE:
            continue
        both = sorted(defined_symbols(path) & core)
        assert not both, f"{os.path.relpath(path, PKG)} defines native symbols of the core too: {both[:10]}"
        mine = sorted(n for n in defined_symbols(path) if n.startswith("mos_") and "dpdk" not in n)
        assert not mine, f"{os.path.relpath(path, PKG)} compiled its own copy of {mine[:10]}"


def test_cython_extensions_link_the_core_library(nm):
    glue = [p for p in built_objects() if p != CORE and "_dpdk_cffi" not in p]
    assert glue
    for path in glue:
        dyn = subprocess.run(["readelf", "-d", path], check=True, capture_output=True, text=True).stdout
        assert "[libmos_core.so]" in dyn, f"{os.path.relpath(path, PKG)} does not link libmos_core.so"


HASH_ONE_FLOW = """
import sys
sys.path.insert(0, {tests!r})
import _netpkt as N
from mos._native import decode
a = decode(228, N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(40000, 80)))["hash"]
b = decode(228, N.ip4("198.18.0.2", "198.18.0.1", payload=N.tcp(80, 40000)))["hash"]
assert a == b, (a, b)
print(a)
"""


def test_two_runs_hash_the_same_flow_differently():
    """The key is random per run, so crafted collisions do not carry over."""
    code = HASH_ONE_FLOW.format(tests=os.path.dirname(os.path.abspath(__file__)))
    runs = [subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
            for _ in range(3)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    values = {r.stdout.strip() for r in runs}
    assert len(values) >= 2, f"three runs gave the same flow hash {values}: the key is not random"


def test_engine_sees_the_key_set_through_native():
    """One copy of the key: setting it through mos._native changes the hash
    the engine's own table uses (the engine reports it per flow)."""
    import _netpkt as N
    from mos._native import decode, flow_hash_seed

    frame = N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(40000, 80))
    flow_hash_seed(1)
    h1 = decode(228, frame)["hash"]
    flow_hash_seed(2)
    h2 = decode(228, frame)["hash"]
    assert h1 != h2
    eng = mos.Engine(mos.Config())
    seen = []
    mon = eng.attach(mos.Monitor())
    mon.on(mos.Event.CONN_START, lambda flow, side, ev: seen.append(flow.hash))
    eng.feed(N.eth(N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(40000, 80, flags=0x02))), ts=1.0)
    assert seen == [h2]
