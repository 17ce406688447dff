# vikt — build, test, install. GNU make; `make -j` safe.
#
#   make            the library, lib/libvikt.a, and the vikt tool, build/bin/vikt
#   make demo       the main job: train two parameters, then an MLP on digits
#   make fashion-mnist  a CNN on Fashion-MNIST (needs dataset-fashion-mnist)
#   make check      the test suite (installs cmocka with apt-get when root)
#   make check-asan the suite under AddressSanitizer + UBSan
#   make check-fuzz libFuzzer on the safetensors loader for FUZZ_TIME (60) seconds
#   make check-neon the suite cross-compiled for aarch64, run under qemu
#   make bench-gemm GEMM speed per kernel and thread count, next to OpenBLAS
#   make bench-train training steps of five models, next to PyTorch
#   make bench-ops  elementwise ops, softmax, cross-entropy, optimizer steps per ISA
#   make docs       API docs with Doxygen; any warning fails
#   make install    PREFIX/prefix, DESTDIR, libdir, includedir, bindir honoured

VERSION := 0.1.0

PREFIX ?= /usr/local
prefix ?= $(PREFIX)
exec_prefix ?= $(prefix)
libdir ?= $(exec_prefix)/lib
bindir ?= $(exec_prefix)/bin
includedir ?= $(prefix)/include

CFLAGS ?= -O2 -g
OBJCOPY ?= objcopy
NM ?= nm
PYTHON ?= python3

# Where objects go and where the archive lands; check-asan builds a variant.
BUILD ?= build
LIBOUT ?= lib
LIB := $(LIBOUT)/libvikt.a

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
VIKT_CFLAGS := -std=c11 $(WARN) -fPIC -fvisibility=hidden -Iinclude -Isrc $(CFLAGS)
TEST_CFLAGS := -std=c11 $(WARN) -Iinclude -Itest $(CFLAGS)
TEST_LIBS := -lcmocka -lm -pthread

SRCS := $(wildcard src/*.c src/ops/*.c src/kernels/*.c src/optim/*.c src/layers/*.c src/io/*.c)

# SIMD GEMM kernels: each file is built only for a target that can run it and
# gets its instruction-set flags alone, so the rest stays baseline x86-64 /
# armv8 and dispatch.c picks a kernel at run time.
# The vector kernels (vec_*.c) follow the same rule.
SIMD_SRCS := src/kernels/gemm_avx2.c src/kernels/gemm_avx512.c src/kernels/gemm_neon.c \
             src/kernels/vec_avx2.c src/kernels/vec_avx512.c src/kernels/vec_neon.c
TARGET_MACHINE := $(shell $(CC) -dumpmachine)
ifneq ($(filter x86_64-% amd64-%,$(TARGET_MACHINE)),)
SRCS := $(filter-out src/kernels/gemm_neon.c src/kernels/vec_neon.c,$(SRCS))
$(BUILD)/obj/src/kernels/gemm_avx2.o $(BUILD)/obj/src/kernels/vec_avx2.o: ISA_CFLAGS := -mavx2 -mfma
$(BUILD)/obj/src/kernels/gemm_avx512.o $(BUILD)/obj/src/kernels/vec_avx512.o: ISA_CFLAGS := -mavx512f -mfma
else ifneq ($(filter aarch64-% arm64-%,$(TARGET_MACHINE)),)
SRCS := $(filter-out src/kernels/gemm_avx2.c src/kernels/gemm_avx512.c src/kernels/vec_avx2.c src/kernels/vec_avx512.c,$(SRCS))
else
SRCS := $(filter-out $(SIMD_SRCS),$(SRCS))
endif
OBJS := $(SRCS:%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(wildcard test/test_*.c)
TESTS := $(TEST_SRCS:test/%.c=$(BUILD)/test/%)
TEST_SUPPORT := $(BUILD)/obj/test/support.o
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
# The vikt tool: its logic (cli.c, which test_cli calls in-process) and a
# thin main.c. It reads files through the library's internals, so it links
# the objects, not the archive.
CLI_OBJ := $(BUILD)/obj/tools/vikt/cli.o
VIKT_BIN := $(BUILD)/bin/vikt

.SECONDARY:

.PHONY: all demo fashion-mnist examples check check-deps check-header check-symbols check-ffi \
        check-asan check-neon check-valgrind bench-gemm bench-train bench-ops run-tests docs install uninstall check-install clean \
        fuzz check-fuzz

all: $(LIB) $(VIKT_BIN)

# --- library: compile, pre-link into one object, hide internal symbols ------
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(VIKT_CFLAGS) $(ISA_CFLAGS) -MMD -MP -c $< -o $@

# `-r` merges every object into one, so calls between vikt files resolve now;
# --localize-hidden then turns every hidden (non-VIKT_API) symbol local, and a
# program defining its own vikt__helper cannot replace ours.
$(BUILD)/vikt.o: $(OBJS)
	$(CC) -r -nostdlib -o $@.tmp $(OBJS)
	$(OBJCOPY) --localize-hidden $@.tmp $@
	@rm -f $@.tmp

$(LIB): $(BUILD)/vikt.o
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $<

check-symbols: $(LIB)
	@bad=$$($(NM) -g --defined-only $(LIB) | awk 'NF == 3 && $$3 !~ /^vikt_/ {print $$3}'); \
	if [ -n "$$bad" ]; then echo "check-symbols: exported non-vikt_ symbols:"; echo "$$bad"; exit 1; fi; \
	echo "check-symbols: only vikt_* symbols are exported ($$($(NM) -g --defined-only $(LIB) | awk 'NF == 3' | wc -l) symbols)"

# --- tests -------------------------------------------------------------------
$(BUILD)/obj/test/%.o: test/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/test/%: $(BUILD)/obj/test/%.o $(TEST_SUPPORT) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) -o $@

# test_gemm forces each kernel through internal entry points, so it links the
# objects rather than the archive (where internal symbols are local).
$(BUILD)/test/test_gemm: $(BUILD)/obj/test/test_gemm.o $(TEST_SUPPORT) $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) -o $@

# test_io and test_checkpoint reach the files layer's internals (fault
# injection, file edits), test_fuzz_replay runs the fuzz target over its
# corpus and test_vec calls every vector-kernel table: objects, not archive.
$(BUILD)/test/test_io $(BUILD)/test/test_checkpoint $(BUILD)/test/test_fuzz_replay $(BUILD)/test/test_vec: $(BUILD)/test/%: $(BUILD)/obj/test/%.o $(TEST_SUPPORT) $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) -o $@

# test_cli runs the vikt tool's vikt__cli_main in-process.
$(BUILD)/test/test_cli: $(BUILD)/obj/test/test_cli.o $(TEST_SUPPORT) $(CLI_OBJ) $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(TEST_LIBS) -o $@

$(VIKT_BIN): $(BUILD)/obj/tools/vikt/main.o $(CLI_OBJ) $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lm -pthread -o $@

# Prints the GEMM kernel in use (VIKT_ISA=x print-isa says whether x is usable).
$(BUILD)/tools/print-isa: tools/print-isa.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $(LDFLAGS) $< $(LIB) -lm -pthread -o $@

check-deps:
	@sh tools/ensure-deps.sh

# The suite runs once per GEMM kernel the CPU can run (VIKT_ISA=scalar, avx2,
# avx512 on x86-64; scalar, neon on aarch64); VIKT_TEST_WRAPPER (qemu,
# valgrind) is put in front of every program.
GEMM_ISAS := scalar avx2 avx512 neon
run-tests: $(TESTS) $(BUILD)/tools/print-isa
	@isas=$$(for i in $(GEMM_ISAS); do \
	  [ "$$(VIKT_ISA=$$i $(VIKT_TEST_WRAPPER) $(BUILD)/tools/print-isa)" = $$i ] && printf '%s ' $$i; done); \
	VIKT_TEST_WRAPPER="$(VIKT_TEST_WRAPPER)" VIKT_TEST_QUICK="$(VIKT_TEST_QUICK)" VIKT_TEST_ISAS="$$isas" \
	  sh tools/run-tests.sh $(TESTS)

check-header:
	@sh tools/check-header.sh "$(CC)"

check-ffi: $(LIB)
	@if command -v $(PYTHON) >/dev/null 2>&1; then \
	  $(CC) -shared -o $(BUILD)/libvikt.so -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive -lm -pthread && \
	  VIKT_SO=$(BUILD)/libvikt.so $(PYTHON) test/ffi/test_ctypes.py; \
	else echo "check-ffi: skipped: $(PYTHON) is not installed"; fi

check: check-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-header check-symbols
	@$(MAKE) --no-print-directory check-ffi
	@$(MAKE) --no-print-directory run-tests

SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
check-asan: check-deps
	@$(MAKE) --no-print-directory BUILD=build/asan LIBOUT=build/asan/lib \
	  CFLAGS="-O1 -g $(SAN)" LDFLAGS="$(SAN)" run-tests

# The suite cross-compiled for aarch64 (the NEON kernel) and run under qemu;
# tools/ensure-neon-deps.sh installs the cross compiler, qemu and arm64 cmocka
# (Debian multiarch, which brings libc6:arm64, so qemu needs no -L: with
# `-L /usr/aarch64-linux-gnu` qemu 7.2 hangs in pthread_create).
AARCH64 ?= aarch64-linux-gnu
QEMU_AARCH64 ?= qemu-aarch64
check-neon:
	@sh tools/ensure-neon-deps.sh $(AARCH64)
	@$(MAKE) --no-print-directory BUILD=build/$(AARCH64) LIBOUT=build/$(AARCH64)/lib \
	  CC=$(AARCH64)-gcc AR=$(AARCH64)-ar OBJCOPY=$(AARCH64)-objcopy NM=$(AARCH64)-nm \
	  VIKT_TEST_WRAPPER="$(QEMU_AARCH64)" VIKT_TEST_QUICK=1 run-tests

check-valgrind: check-deps
	@$(MAKE) --no-print-directory BUILD=build/valgrind LIBOUT=build/valgrind/lib \
	  CFLAGS="-O1 -g" $(patsubst test/%.c,build/valgrind/test/%,$(TEST_SRCS))
	@VIKT_TEST_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect" \
	  sh tools/run-tests.sh $(patsubst test/%.c,build/valgrind/test/%,$(TEST_SRCS))

# --- fuzzing -------------------------------------------------------------------
# libFuzzer on the safetensors reader and loader (test/fuzz/fuzz_safetensors.c):
# `make fuzz` builds build/fuzz/fuzz_safetensors with clang, ASan and UBSan;
# `make check-fuzz` runs it FUZZ_TIME seconds from the committed seeds (new
# inputs go to build/fuzz/corpus, crashes to build/fuzz/). Every run-tests
# replays the seeds without clang (test_fuzz_replay).
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz:
	@$(MAKE) --no-print-directory BUILD=build/fuzz LIBOUT=build/fuzz/lib CC=$(FUZZ_CC) \
	  CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" build/fuzz/fuzz_safetensors

$(BUILD)/fuzz_safetensors: test/fuzz/fuzz_safetensors.c $(OBJS)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) -Iinclude $(CFLAGS) -fsanitize=fuzzer $^ -lm -pthread -o $@

check-fuzz: fuzz
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_safetensors -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/ build/fuzz/corpus test/fuzz/corpus test/fixtures/safetensors

# --- examples and the demo ---------------------------------------------------
$(BUILD)/examples/%: examples/%.c examples/example_util.h $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CFLAGS) $(LDFLAGS) $< $(LIB) -lm -pthread -o $@

examples: $(EXAMPLES)

demo: $(BUILD)/examples/demo
	$(BUILD)/examples/demo data/digits.csv

# Fashion-MNIST (examples/fashion_mnist.c): the IDX files of the Debian package
# dataset-fashion-mnist, gunzipped into $(FASHION_DATA), then a run on 2 threads.
FASHION_GZ ?= /usr/share/datasets/fashion-mnist
FASHION_DATA := $(BUILD)/data/fashion-mnist
FASHION_FILES := $(addprefix $(FASHION_DATA)/,train-images-idx3-ubyte train-labels-idx1-ubyte \
                   t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
$(FASHION_DATA)/%-ubyte:
	@if [ ! -f $(FASHION_GZ)/$*-ubyte.gz ]; then \
	  echo "fashion-mnist: $(FASHION_GZ)/$*-ubyte.gz is missing;"; \
	  echo "  install it with: apt-get install dataset-fashion-mnist (or set FASHION_GZ=DIR)"; \
	  exit 1; fi
	@mkdir -p $(@D)
	gzip -dc $(FASHION_GZ)/$*-ubyte.gz > $@.tmp && mv $@.tmp $@

fashion-mnist: $(BUILD)/examples/fashion_mnist $(FASHION_FILES)
	$(BUILD)/examples/fashion_mnist --threads 2 --data $(FASHION_DATA) $(FASHION_ARGS)

# --- benchmarks ----------------------------------------------------------------
# bench/gemm.c times every kernel directly (it links the objects) and, when
# libopenblas-dev is installed, cblas_sgemm in the same process.
BENCH_CFLAGS := -std=c11 $(WARN) -Iinclude -Isrc -O2 -g
OPENBLAS_FLAGS = $(shell printf '\043include <cblas.h>\nint main(void){openblas_set_num_threads(1);return 0;}\n' | \
  $(CC) -x c - -lopenblas -o /dev/null >/dev/null 2>&1 && echo -DVIKT_BENCH_OPENBLAS -lopenblas)
$(BUILD)/bench/gemm: bench/gemm.c $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(LDFLAGS) $< $(OBJS) $(OPENBLAS_FLAGS) -lm -pthread -o $@

bench-gemm: $(BUILD)/bench/gemm
	@$(BUILD)/bench/gemm

# bench/train.c uses the public API only; bench/train.sh runs it and, when
# python3-torch is installed, bench/train_torch.py for every model and thread
# count (see docs/performance.md).
$(BUILD)/bench/train: bench/train.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(LDFLAGS) $< $(LIB) -lm -pthread -o $@

bench-train: $(BUILD)/bench/train
	@sh bench/train.sh $(BUILD)/bench/train

# bench/ops.c times the elementwise ops, softmax, cross-entropy and the
# optimizer steps through the public API, once per usable kernel set.
$(BUILD)/bench/ops: bench/ops.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(LDFLAGS) $< $(LIB) -lm -pthread -o $@

bench-ops: $(BUILD)/bench/ops $(BUILD)/tools/print-isa
	@for i in $(GEMM_ISAS); do \
	  [ "$$(VIKT_ISA=$$i $(BUILD)/tools/print-isa)" = $$i ] && VIKT_ISA=$$i $(BUILD)/bench/ops; done; true

# --- docs ----------------------------------------------------------------------
docs:
	@command -v doxygen >/dev/null 2>&1 || { echo "docs: doxygen is not installed (apt-get install doxygen)"; exit 1; }
	@mkdir -p $(BUILD)/docs
	doxygen docs/Doxyfile

# --- install -------------------------------------------------------------------
install: $(LIB) $(VIKT_BIN)
	install -d $(DESTDIR)$(includedir) $(DESTDIR)$(libdir)/pkgconfig $(DESTDIR)$(bindir)
	install -m 644 include/vikt.h $(DESTDIR)$(includedir)/vikt.h
	install -m 644 $(LIB) $(DESTDIR)$(libdir)/libvikt.a
	install -m 755 $(VIKT_BIN) $(DESTDIR)$(bindir)/vikt
	sed -e 's|@prefix@|$(prefix)|g' -e 's|@libdir@|$(libdir)|g' \
	    -e 's|@includedir@|$(includedir)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    pkgconfig/vikt.pc.in > $(DESTDIR)$(libdir)/pkgconfig/vikt.pc

uninstall:
	rm -f $(DESTDIR)$(includedir)/vikt.h $(DESTDIR)$(libdir)/libvikt.a \
	      $(DESTDIR)$(libdir)/pkgconfig/vikt.pc $(DESTDIR)$(bindir)/vikt

# Install into a temporary prefix and a DESTDIR stage, build a consumer with
# pkg-config, uninstall; see tools/check-install.sh.
check-install: $(LIB)
	@MAKE="$(MAKE)" CC="$(CC)" sh tools/check-install.sh

clean:
	rm -rf build lib

-include $(OBJS:.o=.d) $(TEST_SUPPORT:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/obj/tools/vikt/main.d $(TESTS:$(BUILD)/test/%=$(BUILD)/obj/test/%.d)
