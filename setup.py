"""Build the compiled per-packet core.

Every C file of the project is compiled once, into one shared library,
``mos/libmos_core.so``; the Cython extensions are thin glue that link it
(found next to them through an ``$ORIGIN`` run path).  So there is one copy
of each global (the flow hash key, for one) and nm shows each native
symbol in one file only.

Extensions:
  mos.libmos_core        the C core: native/ (capture, decoder, defrag, SHA-256,
                         AF_PACKET, pcap ports), mos/tcp/ (the TCP module) and
                         mos/dualstack/ (flow table, events, edits); not a
                         Python module: a plain shared library
  mos._native            capture reader and packet decoder, from Python
  mos.tcp._stream        the reassembly buffer on its own (tests, tools)
  mos.tcp._tcp           the TCP endpoint module on its own (per-state tests)
  mos.tcp._host          the end host's active endpoint on its own (sans-I/O tests)
  mos.endhost._stack     the end host's stack: ARP/ND, ICMP echo, TCP sockets (sans-I/O)
  mos.dualstack._engine  flow table, endpoint models, events (the hot path)
  mos.ports._afpacket    AF_PACKET port, Linux
  mos.runtime._loop      the port loop and the clock; capture files as ports
  mos.consumers._literal a compiled stream consumer (literal strings), the example
                         of Engine.add_consumer
  middleboxes.ids._prefilter  the IDS's Hyperscan stream prefilter (a consumer), only
                         when `pkg-config --exists libhs` succeeds
  mos.app._http          HTTP/1.x on libhtp as a consumer (mos.app.http), only when
                         `pkg-config --exists htp` succeeds
  mos.app._tls           TLS record and handshake framing as a consumer (mos.app.tls)
  mos.ports._dpdk_cffi   the DPDK port driver (cffi, native/dpdk/), only when
                         `pkg-config --exists libdpdk` succeeds; without it mos
                         builds anyway and that driver says it is unavailable

MOS_BUILD_ONLY=mos._native,... builds a subset (handy while developing; the
core library is always built).
"""
import os
import subprocess
import sys
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = "mos.libmos_core"
CORE_DIRS = ["native", "mos/tcp", "mos/dualstack", "mos/endhost"]
CORE_SOURCES = sorted(s for d in CORE_DIRS for s in glob(f"{d}/*.c")
                      if not os.path.basename(s).startswith("_"))
# headers: an edit to one rebuilds what includes it (setuptools tracks sources only)
HEADERS = sorted(h for d in CORE_DIRS for h in glob(f"{d}/*.h"))
WARN = ["-Wall", "-Wno-unused-function"]
# The library exports its API (default visibility); -fno-semantic-interposition
# lets calls between its own files bind directly instead of through the PLT.
CORE_CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fno-semantic-interposition",
               "-flto"] + WARN
# Cython glue: nothing to export but the module init (Cython marks it visible)
GLUE_CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fvisibility=hidden"] + WARN


class BuildExt(build_ext):
    """Builds the core library first under a plain name, then links every
    Cython extension against it with a run path relative to its own folder."""

    def get_ext_filename(self, fullname):
        # called with the full dotted name or with its last part only
        parts = fullname.split(".")
        if parts[-1] == CORE.rsplit(".", 1)[1]:
            return os.path.join(*parts[:-1], "libmos_core.so")
        return super().get_ext_filename(fullname)

    def build_extensions(self):
        # the library before its users, and alone: a parallel build (-j)
        # would link them while it is being written
        core = [e for e in self.extensions if e.name == CORE]
        rest = [e for e in self.extensions if e.name != CORE]
        for e in core:
            self.build_extension(e)
        self.extensions = rest
        try:
            super().build_extensions()
        finally:
            self.extensions = core + rest

    def build_extension(self, ext):
        if ext.name == CORE:
            # -Bsymbolic: calls between the library's own files bind at link time
            ext.extra_link_args = ext.extra_link_args + ["-Wl,-soname,libmos_core.so",
                                                         "-Wl,-Bsymbolic", "-O3", "-flto=auto"]
        elif getattr(ext, "links_core", False):
            libdir = os.path.dirname(self.get_ext_fullpath(CORE))
            here = os.path.dirname(self.get_ext_fullpath(ext.name))
            rel = os.path.relpath(libdir, here)
            ext.library_dirs = ext.library_dirs + [libdir]
            ext.libraries = ext.libraries + ["mos_core"]
            ext.runtime_library_dirs = ext.runtime_library_dirs + [
                "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"]
        super().build_extension(ext)


def glue(name, pyx):
    e = Extension(name, [pyx], include_dirs=CORE_DIRS, extra_compile_args=GLUE_CFLAGS,
                  depends=HEADERS)
    e.links_core = True
    return e


core = Extension(CORE, CORE_SOURCES, include_dirs=CORE_DIRS,
                 extra_compile_args=CORE_CFLAGS + ["-pthread"],
                 extra_link_args=["-ldl", "-pthread"], depends=HEADERS)
candidates = [
    glue("mos._native", "mos/_native.pyx"),
    glue("mos.tcp._stream", "mos/tcp/_stream.pyx"),
    glue("mos.tcp._tcp", "mos/tcp/_tcp.pyx"),
    glue("mos.tcp._host", "mos/tcp/_host.pyx"),
    glue("mos.endhost._stack", "mos/endhost/_stack.pyx"),
    glue("mos.dualstack._engine", "mos/dualstack/_engine.pyx"),
    glue("mos.ports._afpacket", "mos/ports/_afpacket.pyx"),
    glue("mos.runtime._loop", "mos/runtime/_loop.pyx"),
    glue("mos.consumers._literal", "mos/consumers/_literal.pyx"),
    glue("mos.app._tls", "mos/app/_tls.pyx"),
]


def _have(pkg):
    try:
        return subprocess.run(["pkg-config", "--exists", pkg], check=False).returncode == 0
    except FileNotFoundError:
        return False


if _have("libhs"):
    pf = glue("middleboxes.ids._prefilter", "middleboxes/ids/_prefilter.pyx")
    pf.libraries = ["hs"]
    candidates.append(pf)
else:
    print("mos: libhs (hyperscan) not found: the IDS prefilter is unavailable "
          "(apt-get install libhyperscan-dev)", file=sys.stderr)
if _have("htp"):
    hp = glue("mos.app._http", "mos/app/_http.pyx")
    hp.libraries = ["htp"]
    candidates.append(hp)
else:
    print("mos: libhtp not found: mos.app.http is unavailable (apt-get install libhtp-dev)",
          file=sys.stderr)
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

glue_exts = cythonize(
    exts,
    language_level=3,
    compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
)
for built, src in zip(glue_exts, exts):  # cythonize returns new Extension objects
    built.links_core = src.links_core

setup(
    ext_modules=[core] + glue_exts,
    cmdclass={"build_ext": BuildExt},
    **({"cffi_modules": cffi_modules} if cffi_modules else {}),
)
