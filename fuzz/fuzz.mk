# Coverage-guided fuzzing (fuzz/README.md).  Included by the top-level Makefile.
#
#   make fuzz-build   the libFuzzer harnesses, clang + ASan + UBSan, in build/fuzz/
#   make fuzz         every harness FUZZ_SECONDS (300) each, corpus kept in build/fuzz/work/
#   make fuzz-ci      every harness FUZZ_CI_SECONDS (20) each on the committed seeds and
#                     regression inputs; a crash fails it and names the reproducer
#   FUZZ_HARNESSES="rbuf engine" limits either to some harnesses.
#
# The C sources are compiled straight from the tree (no Python, no setup.py):
# the same files setup.py puts in libmos_core.so, minus the AF_PACKET port.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_CI_SECONDS ?= 20
FUZZ_HARNESSES ?= capture engine endpoint host stack seqmap rbuf settings http tls
FUZZ_DIR := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS := -g -O1 -std=gnu11 -fno-omit-frame-pointer -fno-strict-aliasing \
	-Inative -Imos/tcp -Imos/dualstack -Imos/endhost $(FUZZ_SAN)
FUZZ_CORE_SRC := native/capture.c native/pcapport.c native/decode.c native/defrag.c \
	native/sha256.c $(wildcard mos/tcp/*.c) mos/dualstack/engine.c mos/dualstack/digestq.c \
	$(wildcard mos/endhost/*.c)
FUZZ_CORE_SRC := $(filter-out mos/tcp/_% mos/endhost/_%,$(FUZZ_CORE_SRC))
FUZZ_CORE_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_CORE_SRC))
FUZZ_C_HARNESSES := capture engine endpoint host stack seqmap rbuf
FUZZ_BINS := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_C_HARNESSES))
FUZZ_HDRS := $(wildcard native/*.h mos/tcp/*.h mos/dualstack/*.h mos/endhost/*.h) fuzz/fuzz_util.h

.PHONY: fuzz fuzz-ci fuzz-build fuzz-deps
.SECONDARY: $(FUZZ_CORE_OBJ)

# clang 14 is Debian bookworm's default; libclang-rt-14-dev holds libFuzzer
fuzz-deps:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1 || \
	    ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then \
	  echo "installing clang and libFuzzer (apt)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; \
	fi
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c "import atheris" 2>/dev/null; then \
	  echo "installing atheris (pip)"; $(BIN)/pip install -q atheris; fi

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_CORE_OBJ) $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_CORE_OBJ) -ldl -pthread -o $@

fuzz: fuzz-build build
	fuzz/run.sh long $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-ci: fuzz-build build
	fuzz/run.sh ci $(FUZZ_CI_SECONDS) $(FUZZ_HARNESSES)
