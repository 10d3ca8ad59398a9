"""Build the compiled per-packet core.

Extensions:
  mos._native            capture reader and packet decoder (native/*.c)
  mos.tcp._stream        the reassembly buffer on its own (tests, tools)
  mos.tcp._tcp           the TCP endpoint module on its own (per-state tests)
  mos.dualstack._engine  flow table, endpoint models, events (the hot path)
  mos.ports._afpacket    AF_PACKET port (native/afpacket.c), Linux
  mos.ports._dpdk_cffi   the DPDK port driver (cffi, native/dpdk/), only when
                         `pkg-config --exists libdpdk` succeeds; without it mos
                         builds anyway and that driver says it is unavailable

MOS_BUILD_ONLY=mos._native,... builds a subset (handy while developing).
"""
import os
import subprocess
import sys
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

NATIVE = sorted(s for s in glob("native/*.c") if not os.path.basename(s).startswith("_"))
DUAL = sorted(s for s in glob("mos/dualstack/*.c") if not os.path.basename(s).startswith("_"))
# the TCP module (mos/tcp): sequence arithmetic, options, endpoint, buffers
TCP = sorted(s for s in glob("mos/tcp/*.c") if not os.path.basename(s).startswith("_"))
# the decoder parses TCP options with mos/tcp/options.c
NATIVE_TCP = NATIVE + ["mos/tcp/options.c"]
# -fvisibility=hidden: calls between our C files go direct, not through the PLT
# (Cython marks the module init function visible itself)
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fvisibility=hidden", "-Wall",
          "-Wno-unused-function"]
INC = ["native", "mos/tcp", "mos/dualstack"]


# headers: an edit to one rebuilds the extensions (setuptools tracks sources only)
HEADERS = sorted(glob("native/*.h") + glob("mos/tcp/*.h") + glob("mos/dualstack/*.h"))


def ext(name, pyx, sources):
    return Extension(name, [pyx] + sources, include_dirs=INC, extra_compile_args=CFLAGS,
                     depends=HEADERS)


candidates = [
    ext("mos._native", "mos/_native.pyx", NATIVE_TCP),
    ext("mos.tcp._stream", "mos/tcp/_stream.pyx", ["mos/tcp/rbuf.c"]),
    # rewrite.c edits whole frames (native/decode.c): not needed to test endpoints
    ext("mos.tcp._tcp", "mos/tcp/_tcp.pyx", [s for s in TCP if not s.endswith("rewrite.c")]),
    ext("mos.dualstack._engine", "mos/dualstack/_engine.pyx", NATIVE + TCP + DUAL),
    ext("mos.ports._afpacket", "mos/ports/_afpacket.pyx", ["native/afpacket.c"]),
]
only = {s.strip() for s in os.environ.get("MOS_BUILD_ONLY", "").split(",") if s.strip()}
exts = [e for e in candidates if os.path.exists(e.sources[0]) and (not only or e.name in only)]


def dpdk_cffi_modules():
    """cffi_modules for the DPDK driver when libdpdk and cffi are there, else [] and one line."""
    if only and "mos.ports._dpdk_cffi" not in only:
        return []
    try:
        found = subprocess.run(["pkg-config", "--exists", "libdpdk"], check=False).returncode == 0
    except FileNotFoundError:  # no pkg-config at all
        found = False
    if not found:
        print("mos: libdpdk not found: the dpdk port driver is unavailable", file=sys.stderr)
        return []
    try:
        import cffi  # noqa: F401  (its setuptools hook handles cffi_modules)
    except ImportError:
        print("mos: cffi not installed: the dpdk port driver is unavailable", file=sys.stderr)
        return []
    return ["mos/ports/dpdk_build.py:ffi"]


cffi_modules = dpdk_cffi_modules()

setup(
    ext_modules=cythonize(
        exts,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
    **({"cffi_modules": cffi_modules} if cffi_modules else {}),
)
