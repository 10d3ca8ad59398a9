"""cffi builder for mos.ports._dpdk_cffi: the DPDK shim (native/dpdk/) over libdpdk.

setup.py lists it in cffi_modules only when `pkg-config --exists libdpdk`
succeeds. To build it by hand, from the repository root:
    python3 mos/ports/dpdk_build.py      # writes mos/ports/_dpdk_cffi*.so, nothing else
"""

import os
import shlex
import subprocess

from cffi import FFI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pkg_config(*args: str) -> list[str]:
    """Flags from `pkg-config ARGS libdpdk`; RuntimeError naming the cause when absent."""
    try:
        out = subprocess.run(
            ["pkg-config", *args, "libdpdk"], capture_output=True, text=True, check=True
        ).stdout
    except FileNotFoundError as e:
        raise RuntimeError("pkg-config is not installed: cannot find libdpdk") from e
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"pkg-config {' '.join(args)} libdpdk: {e.stderr.strip()}") from e
    return shlex.split(out)


# What Python sees: port.h's frame and stats structs, and the shim API
# (native/dpdk_shim.h has the contract of each function).
CDEF = """
typedef struct mos_frame {
    const uint8_t *data;
    uint32_t caplen;
    uint32_t wirelen;
    uint64_t ts_ns;
    uint16_t linktype;
    uint16_t iface;
    uint32_t _pad;
} mos_frame_t;

typedef struct mos_port_stats {
    uint64_t rx, rx_bytes;
    uint64_t tx, tx_bytes;
    uint64_t tx_dropped;
    uint64_t rx_dropped;
} mos_port_stats_t;

#define MOS_DPDK_BURST_MAX 512

typedef struct mos_dpdk_port mos_dpdk_port_t;

int mos_dpdk_init(int argc, char **argv, char *err, size_t errlen);
int mos_dpdk_initialized(void);
unsigned mos_dpdk_port_count(void);
int mos_dpdk_lcore_cpu(unsigned i);
mos_dpdk_port_t *mos_dpdk_port_open(uint16_t port_id, unsigned nb_desc, char *err,
                                    size_t errlen);
mos_dpdk_port_t *mos_dpdk_port_open_mq(uint16_t port_id, unsigned nq, unsigned nb_desc,
                                       char *err, size_t errlen);
void *mos_dpdk_queue(void *h, unsigned q);
int mos_dpdk_rx(void *h, mos_frame_t *frames, int max);
void mos_dpdk_rx_done(void *h);
int mos_dpdk_tx(void *h, const mos_frame_t *frames, int n);
int mos_dpdk_forward(void *from, void *to);
int mos_dpdk_stats(void *h, mos_port_stats_t *stats);
uint16_t mos_dpdk_port_id(void *h);
int mos_dpdk_mtu(void *h);

#define MOS_DPDK_STEER_NONE 0
#define MOS_DPDK_STEER_ADDRS 1
#define MOS_DPDK_STEER_PORTS 2
typedef struct mos_dpdk_steer_stats {
    uint64_t handed, taken, dropped;
} mos_dpdk_steer_stats_t;
int mos_dpdk_steer_hash(const uint8_t *frame, uint32_t len, uint32_t *hash);
int mos_dpdk_steer_owner(const uint8_t *frame, uint32_t len, unsigned nq);
void mos_dpdk_steer_seed(uint64_t seed);
int mos_dpdk_steer_stats(void *h, mos_dpdk_steer_stats_t *stats);
uint64_t mos_dpdk_steer_flush(void *h);
void mos_dpdk_port_close(void *h);
int mos_dpdk_cleanup(void);
const char *mos_dpdk_runtime_dir(void);
"""

# setuptools (setup.py's cffi_modules) wants paths relative to the repository
# root; run as a script, cffi compiles in a temporary folder: absolute paths
_rel = __name__ != "__main__"


def _path(*parts: str) -> str:
    p = os.path.join(ROOT, *parts)
    return os.path.relpath(p) if _rel else p


ffi = FFI()
ffi.cdef(CDEF)
ffi.set_source(
    "mos.ports._dpdk_cffi",
    '#include "dpdk_shim.h"\n',
    sources=[_path("native", "dpdk", "dpdk_shim.c")],
    include_dirs=[_path("native")],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function"]
    + pkg_config("--cflags"),
    # kept in pkg-config's order: its leading -Wl,--as-needed must precede the -l flags
    extra_link_args=pkg_config("--libs"),
)

if __name__ == "__main__":
    import shutil
    import tempfile

    ports = os.path.join(ROOT, "mos", "ports")
    # the name setup.py's build gives it (cffi modules use the stable ABI); a
    # copy under another suffix would shadow or be shadowed by it: remove those
    dest = os.path.join(ports, "_dpdk_cffi.abi3.so")
    with tempfile.TemporaryDirectory(prefix="mos-dpdk-build-") as tmp:
        so = ffi.compile(tmpdir=tmp, verbose=True)
        shutil.copyfile(so, dest + ".tmp")
        os.replace(dest + ".tmp", dest)  # a running process keeps its old copy
    for name in os.listdir(ports):
        if (
            name.startswith("_dpdk_cffi.")
            and name.endswith(".so")
            and name != os.path.basename(dest)
        ):
            os.remove(os.path.join(ports, name))
    print(f"wrote {dest}")
