# hoardfs build.  `make` builds build/; `make check` builds an ASan+UBSan
# variant in build/asan/ and runs every test (unit, crash, fuzz, integration).
# Longer suites: `make torture`, `make fuzz-long`, `make bench`.

CC      ?= cc
PKGS    := fuse3 libnfs liburing
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wvla
BASE_CFLAGS := -std=gnu11 -g -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc $(WARN) $(PKG_CFLAGS)

ifeq ($(SAN),1)
B       := build/asan
OPT     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DHOARD_TEST_HOOKS
else
B       := build
OPT     := -O2
endif
CFLAGS_ALL := $(BASE_CFLAGS) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)

ENGINE_SRC := $(wildcard src/engine/*.c)
APP_SRC    := $(wildcard src/cli/*.c src/fs/*.c src/backend/*.c src/daemon/*.c src/offline/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(B)/obj/%.o)
APP_OBJ    := $(APP_SRC:%.c=$(B)/obj/%.o)
UNIT_SRC   := $(filter-out %_helper.c,$(wildcard tests/unit/test_*.c))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
CRASH_SRC  := $(wildcard tests/crash/*.c)
CRASH_BIN  := $(CRASH_SRC:tests/crash/%.c=$(B)/tests/%)
TESTLIB_SRC := $(wildcard tests/lib/*.c)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(B)/obj/%.o)
# tools the integration tests run (not tests themselves)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(B)/tests/tools/%)
BENCH_SRC  := $(wildcard bench/*.c)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: all deps check check-build unit crash fuzz integration torture fuzz-long bench clean lint

all: $(B)/libhoard.a $(B)/hoardfs $(UNIT_BIN) $(CRASH_BIN) $(TOOL_BIN) $(BENCH_BIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(B)/libhoard.a: $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/hoardfs: $(APP_OBJ) $(B)/libhoard.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(APP_OBJ) $(B)/libhoard.a $(PKG_LIBS) -lpthread

$(B)/tests/%: tests/unit/%.c $(TESTLIB_OBJ) $(B)/libhoard.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(wildcard tests/unit/$*_helper.c) $(TESTLIB_OBJ) $(B)/libhoard.a $(PKG_LIBS) -lcmocka -lpthread

$(B)/tests/%: tests/crash/%.c $(TESTLIB_OBJ) $(B)/libhoard.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(TESTLIB_OBJ) $(B)/libhoard.a $(PKG_LIBS) -lpthread

$(B)/tests/tools/%: tests/tools/%.c $(B)/libhoard.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libhoard.a $(PKG_LIBS) -lpthread

$(B)/bench/%: bench/%.c $(B)/libhoard.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libhoard.a $(PKG_LIBS) -lpthread

# libFuzzer targets (clang): tests/fuzz/fuzz_*.c, engine compiled in.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
build/fuzz/%: tests/fuzz/%.c $(ENGINE_SRC) $(TESTLIB_SRC)
	@mkdir -p $(dir $@)
	clang $(BASE_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(ENGINE_SRC) $(TESTLIB_SRC) -luring -lpthread

deps:
	bash tools/install-deps.sh

check-build:
	$(MAKE) SAN=1 all
	$(MAKE) all
	$(MAKE) $(FUZZ_BIN)

check: check-build
	bash tests/run-tests.sh

unit crash integration:
	$(MAKE) SAN=1 all
	bash tests/run-tests.sh $@

fuzz: $(FUZZ_BIN)
	bash tests/run-tests.sh fuzz

torture: check-build
	HOARD_CRASH_POINTS=200000 HOARD_FSX_OPS=200000 bash tests/run-tests.sh crash integration

fuzz-long: $(FUZZ_BIN)
	HOARD_FUZZ_RUNS=0 HOARD_FUZZ_SECONDS=600 HOARD_FUZZ_SEED=0 bash tests/run-tests.sh fuzz

bench: all
	bash bench/run

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr -Iinclude -Isrc src
	clang-tidy --quiet $(ENGINE_SRC) -- $(BASE_CFLAGS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
