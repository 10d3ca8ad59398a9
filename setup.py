"""Build the compiled per-packet core.

Extensions:
  mos._native            capture reader and packet decoder (native/*.c)
  mos.dualstack._stream  the reassembly buffer on its own (tests, tools)
  mos.dualstack._engine  flow table, endpoint models, events (the hot path)

MOS_BUILD_ONLY=mos._native,... builds a subset (handy while developing).
"""
import os
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

NATIVE = sorted(s for s in glob("native/*.c") if not os.path.basename(s).startswith("_"))
DUAL = sorted(s for s in glob("mos/dualstack/*.c") if not os.path.basename(s).startswith("_"))
# -fvisibility=hidden: calls between our C files go direct, not through the PLT
# (Cython marks the module init function visible itself)
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fvisibility=hidden", "-Wall",
          "-Wno-unused-function"]
INC = ["native", "mos/dualstack"]


def ext(name, pyx, sources):
    return Extension(name, [pyx] + sources, include_dirs=INC, extra_compile_args=CFLAGS)


candidates = [
    ext("mos._native", "mos/_native.pyx", NATIVE),
    ext("mos.dualstack._stream", "mos/dualstack/_stream.pyx", [s for s in DUAL if s.endswith("rbuf.c")]),
    ext("mos.dualstack._engine", "mos/dualstack/_engine.pyx", NATIVE + DUAL),
]
only = {s.strip() for s in os.environ.get("MOS_BUILD_ONLY", "").split(",") if s.strip()}
exts = [e for e in candidates if os.path.exists(e.sources[0]) and (not only or e.name in only)]

setup(
    ext_modules=cythonize(
        exts,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
