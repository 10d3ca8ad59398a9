"""The DPDK port (mos.ports.dpdk) on real traffic: two namespaces joined only
by a forwarder over two net_af_packet vdevs (tests/_vethbed.py).

The EAL starts once per process, so each scenario runs tests/dpdk_forwarder.py
in a subprocess with a timeout. Needs root, libdpdk at build time, iproute2,
ethtool, curl and ping; skips with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time

import pytest
from _vethbed import SERVER4, SERVER6, VethBed

from mos.errors import ConfigError, MosError
from mos.ports import dpdk

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARDER = os.path.join(HERE, "dpdk_forwarder.py")
PORT = 8098
FILE_SIZE = 2 << 20


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_PACKET)"
    ok, reason = dpdk.available()
    if not ok:
        return reason
    for tool in ("ip", "ethtool", "curl", "ping"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


needs_bed = pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))


# ---- without the compiled module (no root needed) ----


def test_driver_unavailable_raises_clear_error(monkeypatch):
    monkeypatch.setattr(dpdk, "lib", None)
    monkeypatch.setattr(dpdk, "ffi", None)
    monkeypatch.setattr(dpdk, "_why_unavailable", dpdk.UNAVAILABLE)
    assert dpdk.available() == (False, dpdk.UNAVAILABLE)
    with pytest.raises(MosError, match=r"libdpdk was not found when mos was built \(apt-get"):
        dpdk.DpdkPort(0, ["--no-huge"])


def test_port_arguments_out_of_range_raise_before_eal():
    with pytest.raises(MosError, match="port_id: -1"):
        dpdk.DpdkPort(-1, [])
    with pytest.raises(MosError, match="nb_desc: 0"):
        dpdk.DpdkPort(0, [], nb_desc=0)


@pytest.mark.skipif(not dpdk.available()[0], reason=dpdk.available()[1])
def test_vdev_on_missing_interface_raises_config_error_before_eal():
    # checked before rte_eal_init (which would only log it), so no EAL starts here
    with pytest.raises(ConfigError, match=r"eal_args\[1\]: .*no network interface 'mosnosuch0'"):
        dpdk.DpdkPort(0, ["--no-huge", "--vdev=net_af_packet0,iface=mosnosuch0"])
    assert not dpdk.lib.mos_dpdk_initialized()


# ---- scenarios in subprocesses ----


def _run_forwarder(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, FORWARDER, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_bed
def test_eal_bad_argument_and_missing_port_raise_clear_errors():
    r = _run_forwarder("errors")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bad_eal_arg"].startswith("DPDK EAL init failed: rte_eal_init: Invalid argument")
    assert "--no-such-eal-option" in out["bad_eal_arg"]
    assert out["bad_port"] == "DPDK port 7 does not exist (the EAL has port 0)"
    assert out["null_port_rx"] > 0  # net_null makes frames: the port works after both errors
    assert "already runs with" in out["other_eal_args"]
    assert out["closed_port"] == "DpdkPort(0) is closed"
    assert "port 0 was closed in this process and cannot open again" in out["reopen"]
    # --in-memory was accepted with --no-huge, and the EAL's folder is gone after exit
    assert re.search(r"/dpdk/mos\d+$", out["runtime_dir"]), out["runtime_dir"]
    assert not os.path.exists(out["runtime_dir"])
    assert "unrecognized option" in r.stderr  # EAL's usage text went to stderr, not stdout


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    why = _why_skip()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("www")
    (root / "f.bin").write_bytes(os.urandom(FILE_SIZE))
    with VethBed() as b:
        srv = subprocess.Popen(
            b.in_server(
                sys.executable, "-m", "http.server", "--bind", "::", "-d", str(root), str(PORT)
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):  # bounded: 10 s
                probe = subprocess.run(
                    b.in_server("curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PORT}/"),
                    check=False,
                )
                if probe.returncode == 0:
                    break
                time.sleep(0.1)
            b.www = root
            yield b
        finally:
            srv.kill()
            srv.wait(timeout=10)


def _forward_and_drive(bed: VethBed, mode: str, tmp_path, curl: bool = True) -> dict:
    """Start the forwarder, ping v4 and v6, curl over v4 and v6, stop it; collect results."""
    fw = subprocess.Popen(
        [sys.executable, FORWARDER, mode, bed.a, bed.b, "--seconds", "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    res: dict = {"curl": {}}
    try:
        ready, _, _ = select.select([fw.stdout], [], [], 20)
        line = fw.stdout.readline() if ready else ""
        assert line.strip() == "READY", f"forwarder did not start: {line!r}"
        for name, dst in (("ping4", SERVER4), ("ping6", SERVER6)):
            res[name] = subprocess.run(
                bed.in_client("ping", "-c", "3", "-i", "0.2", "-W", "3", dst),
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            ).returncode
        if curl:
            for name, host in (("v4", SERVER4), ("v6", f"[{SERVER6}]")):
                out = tmp_path / f"{mode}-{name}.bin"
                r = subprocess.run(
                    bed.in_client(
                        "curl",
                        "-sS",
                        "--max-time",
                        "20",
                        "-o",
                        str(out),
                        f"http://{host}:{PORT}/f.bin",
                    ),
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                res["curl"][name] = (
                    r.returncode,
                    r.stderr.strip(),
                    hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None,
                )
    finally:
        fw.terminate()
        try:
            stdout, stderr = fw.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            fw.kill()
            stdout, stderr = fw.communicate()
    assert fw.returncode == 0, stderr[-2000:]
    res["stats"] = json.loads(stdout.strip().splitlines()[-1])
    return res


@pytest.fixture(scope="module")
def runs(bed, tmp_path_factory):
    """One forwarder run per mode, shared by the tests that check its parts."""
    cache: dict = {}

    def get(mode: str) -> dict:
        if mode not in cache:
            cache[mode] = _forward_and_drive(
                bed, mode, tmp_path_factory.mktemp(mode), curl=mode != "slow"
            )
        return cache[mode]

    return get


def _sha(bed: VethBed) -> str:
    return hashlib.sha256((bed.www / "f.bin").read_bytes()).hexdigest()


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy", "slow"])
def test_forwarder_ping_v4_and_v6_cross(bed, runs, mode):
    r = runs(mode)
    assert (r["ping4"], r["ping6"]) == (0, 0)


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy"])
def test_forwarder_curl_2mb_v4_and_v6_byte_identical(bed, runs, mode):
    r = runs(mode)
    want = _sha(bed)
    for family in ("v4", "v6"):
        rc, err, got = r["curl"][family]
        assert rc == 0, f"curl over {family}: {err}"
        assert got == want, f"curl over {family}: the download differs from the file"


@needs_bed
@pytest.mark.parametrize("mode", ["copy", "zerocopy"])
def test_forwarder_stats_count_every_frame_once(bed, runs, mode):
    s = runs(mode)["stats"]
    a, b = s["a"], s["b"]
    # what one port received, the other sent or dropped (nothing is lost in between)
    assert a["rx"] == b["tx"] + b["tx_dropped"]
    assert b["rx"] == a["tx"] + a["tx_dropped"]
    # the server side carried two downloads of the file, headers and framing on top
    assert b["rx_bytes"] > 2 * FILE_SIZE
    assert b["rx"] > 2 * FILE_SIZE // 1514
    assert a["tx_bytes"] <= b["rx_bytes"]
    if a["tx_dropped"] == 0:
        assert a["tx_bytes"] == b["rx_bytes"]
    assert all(v >= 0 for port in (a, b) for v in port.values())


@needs_bed
def test_slow_helpers_recv_burst_send_forward(bed, runs):
    s = runs("slow")["stats"]
    assert s["a"]["rx"] >= 6 and s["b"]["rx"] >= 6  # 3 echo requests and replies per family
    assert s["a"]["rx"] == s["b"]["tx"] + s["b"]["tx_dropped"]


@needs_bed
def test_bed_without_forwarder_does_not_connect(bed):
    """The control: with nothing bridging the root-side ends, no ping crosses."""
    r = subprocess.run(
        bed.in_client("ping", "-c", "1", "-W", "1", SERVER4),
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode != 0
