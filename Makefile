# stream-llm build. `make` builds build/streamllm and build/libstreamllm.a;
# `make check` runs every test (unit, conformance, ASan+UBSan, fuzz smoke).
# See README.md.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -g $(OPT) -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -Isrc -pthread
CFLAGS  += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  += -lm -pthread

# The portable core (also compiled to wasm) and the native-only tools around
# it (shards: SHA-256 and JSON; server: HTTP), which link system libraries.
CORE_SRC  := $(sort $(wildcard src/util/*.c src/gguf/*.c src/quant/*.c src/tokenizer/*.c \
                               src/model/*.c src/cpu/*.c src/sampler/*.c))
NATIVE_SRC := $(sort $(wildcard src/shard/*.c src/server/*.c))
NATIVE_LIBS := -lcjson -lcrypto -lmicrohttpd -lcurl
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))

CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
NATIVE_OBJ := $(NATIVE_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/libstreamllm.a
TOOLS_LIB := $(BUILD)/libstreamllm-tools.a
CLI       := $(BUILD)/streamllm

.PHONY: all tests check test unit conformance asan fuzz clean deps demo bench

all: $(CLI) $(LIB)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(TOOLS_LIB): $(NATIVE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CLI): $(CLI_OBJ) $(TOOLS_LIB) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $(CLI_OBJ) $(TOOLS_LIB) $(LIB) $(NATIVE_LIBS) $(LDLIBS) -o $@

# (-MMD: some tests #include the sources they test, e.g. the GPU backend's)
$(BUILD)/tests/%: tests/%.c $(TOOLS_LIB) $(LIB) tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP -MF $@.d $(LDFLAGS) $< $(TOOLS_LIB) $(LIB) $(NATIVE_LIBS) $(LDLIBS) -o $@
-include $(TEST_BIN:=.d)

tests: all $(TEST_BIN)

# Unit tests and conformance suite with the normal build.
test: tests
	BUILD=$(BUILD) bash tests/run.sh

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer (clang).
asan:
	$(MAKE) tests BUILD=build-asan CC=clang OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined"
	BUILD=build-asan SL_SANITIZED=1 bash tests/run.sh

# libFuzzer targets (clang). FUZZ_SECONDS bounds each run.
FUZZ_SECONDS ?= 600
FUZZ_CFLAGS = -std=c11 -g -O1 -Isrc -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -pthread \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
build-fuzz/%: fuzz/%.c $(CORE_SRC) $(NATIVE_SRC)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) $< $(CORE_SRC) $(NATIVE_SRC) $(NATIVE_LIBS) -lm -o $@
fuzz: $(FUZZ_BIN)
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh $(FUZZ_BIN)

# The engine as WebAssembly: clang-14 + wasi-libc as a plain libc (no
# emscripten), reactor module, SIMD128, up to 4 GiB of memory. Sources: the
# portable core minus its native-only files (pthreads, mmap), the wasm
# platform layer and the WebGPU backend. Compiled with -c and linked without
# -O: with binaryen installed, clang-14 would run wasm-opt at link time and
# fail on SIMD. See src/wasm/README.md.
WASM_CC      ?= clang-14
WASM_BUILD   := build/wasm
WASM_SRC     := $(filter-out src/cpu/threadpool.c src/gguf/gguf_file.c,$(CORE_SRC)) \
                $(sort $(wildcard src/wasm/*.c src/gpu/*.c))
WASM_OBJ     := $(WASM_SRC:%.c=$(WASM_BUILD)/obj/%.o)
WASM_CFLAGS  := --target=wasm32-wasi -std=c11 -O2 -msimd128 -Wall -Wextra -Werror -Wshadow \
                -Wstrict-prototypes -Isrc
WASM_LDFLAGS := --target=wasm32-wasi -mexec-model=reactor -Wl,--max-memory=4294967296 \
                -Wl,-z,stack-size=1048576 -Wl,--strip-all
.PHONY: wasm
wasm: $(WASM_BUILD)/engine.wasm $(WASM_BUILD)/engine-mt.wasm
$(WASM_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -MMD -MP -c $< -o $@
$(WASM_BUILD)/engine.wasm: $(WASM_OBJ)
	$(WASM_CC) $(WASM_LDFLAGS) $(WASM_OBJ) -o $@
	cp $@ web/engine/engine.wasm  # where the page (web/stream-llm.js) loads it from
-include $(WASM_OBJ:.o=.d)
# The threaded variant (web/engine/threads.mjs runs it on Workers): atomics,
# one shared memory that JS creates and every Worker imports. wasi-libc is
# not built with atomics: --no-check-features lets it link (only the calling
# thread allocates; see src/wasm/threadpool_wasm.c).
WASM_MT_OBJ := $(WASM_SRC:%.c=$(WASM_BUILD)/obj-mt/%.o)
$(WASM_BUILD)/obj-mt/%.o: %.c
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -matomics -mbulk-memory -MMD -MP -c $< -o $@
$(WASM_BUILD)/engine-mt.wasm: $(WASM_MT_OBJ)
	$(WASM_CC) $(WASM_LDFLAGS) -Wl,--shared-memory -Wl,--import-memory -Wl,--no-check-features $(WASM_MT_OBJ) -o $@
	cp $@ web/engine/engine-mt.wasm  # the page's CPU threads (cross-origin isolated)
-include $(WASM_MT_OBJ:.o=.d)
# The relaxed-SIMD variants of both (engine-relaxed.wasm, engine-relaxed-mt.wasm):
# the same sources compiled by clang-16 with -mrelaxed-simd (clang-14's is
# pre-standard), for the int8 dot products of src/cpu/gemm_wasm.c; the page
# picks them where WebAssembly.validate accepts a relaxed instruction
# (web/engine/wasm.mjs). Built when clang-16 (+ lld-16,
# libclang-rt-16-dev-wasm32) is installed.
WASM_RELAXED_CC ?= clang-16
WASM_RELAXED := $(if $(shell command -v $(WASM_RELAXED_CC)),$(WASM_BUILD)/engine-relaxed.wasm $(WASM_BUILD)/engine-relaxed-mt.wasm)
wasm: $(WASM_RELAXED)
WASM_RELAXED_OBJ := $(WASM_SRC:%.c=$(WASM_BUILD)/obj-relaxed/%.o)
WASM_RELAXED_MT_OBJ := $(WASM_SRC:%.c=$(WASM_BUILD)/obj-relaxed-mt/%.o)
$(WASM_BUILD)/obj-relaxed/%.o: %.c
	@mkdir -p $(dir $@)
	$(WASM_RELAXED_CC) $(WASM_CFLAGS) -mrelaxed-simd -MMD -MP -c $< -o $@
$(WASM_BUILD)/obj-relaxed-mt/%.o: %.c
	@mkdir -p $(dir $@)
	$(WASM_RELAXED_CC) $(WASM_CFLAGS) -mrelaxed-simd -matomics -mbulk-memory -MMD -MP -c $< -o $@
$(WASM_BUILD)/engine-relaxed.wasm: $(WASM_RELAXED_OBJ)
	$(WASM_RELAXED_CC) $(WASM_LDFLAGS) $(WASM_RELAXED_OBJ) -o $@
	cp $@ web/engine/engine-relaxed.wasm
$(WASM_BUILD)/engine-relaxed-mt.wasm: $(WASM_RELAXED_MT_OBJ)
	$(WASM_RELAXED_CC) $(WASM_LDFLAGS) -Wl,--shared-memory -Wl,--import-memory -Wl,--no-check-features $(WASM_RELAXED_MT_OBJ) -o $@
	cp $@ web/engine/engine-relaxed-mt.wasm
-include $(WASM_RELAXED_OBJ:.o=.d) $(WASM_RELAXED_MT_OBJ:.o=.d)

# Everything CI runs, with one grand total (scripts/check.sh).
check:
	bash scripts/check.sh

deps:
	bash scripts/deps.sh

demo: all
	bash scripts/demo.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(CORE_OBJ:.o=.d) $(NATIVE_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
