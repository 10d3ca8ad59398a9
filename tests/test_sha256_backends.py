"""Both SHA-256 implementations (libcrypto via dlopen, built-in FIPS 180-4) agree with hashlib."""

import hashlib
import os
import subprocess
import sys

import pytest

from mos import _native

SIZES = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000, 65537]

CHECK = """
import hashlib, os, random, sys
from mos import _native
random.seed(7)
for n in %r:
    d = bytes(random.getrandbits(8) for _ in range(n))
    assert _native.sha256(d) == hashlib.sha256(d).digest(), n
print(_native.sha256_backend())
""" % (SIZES,)


@pytest.mark.parametrize("backend", ["default", "builtin"])
def test_sha256_backend_matches_hashlib(backend):
    env = dict(os.environ)
    env.pop("MOS_SHA256", None)
    if backend == "builtin":
        env["MOS_SHA256"] = "builtin"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip()
    assert name == "builtin" if backend == "builtin" else name in ("libcrypto", "builtin")


def test_sha256_incremental_equals_one_shot():
    data = os.urandom(10000)
    assert _native.sha256(data) == hashlib.sha256(data).digest()
