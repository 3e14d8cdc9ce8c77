# Thin wrapper over CMake. `make serve` and `make check` install missing Debian
# dependencies first (scripts/install-deps.sh: `--serve` installs only what
# building and serving need; `make check` everything the tests need, npm test
# peers included), then configure and build.
BUILD      ?= build
BUILD_SAN  ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps deps-serve build packages serve check test test-asan bench clean format fuzz fuzz-merge \
        fleet-test container-test

all: build

deps:
	@scripts/install-deps.sh

deps-serve:
	@scripts/install-deps.sh --serve

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# ./packages as `par serve` (no flags) serves it: the examples built above.
packages: deps-serve $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)
	@mkdir -p packages
	@cp $(BUILD)/packages/*.apkg packages/

# Listens on 127.0.0.1:8080, or on $$PAR_LISTEN.
serve: packages
	exec $(BUILD)/par serve

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900

$(BUILD_SAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPAR_SANITIZE=ON $(CMAKE_ARGS) >/dev/null

test-asan: deps $(BUILD_SAN)/CMakeCache.txt
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ctest --output-on-failure --timeout 900

check: test test-asan

# The fleet suite (tests/fleet): several nodes, PostgreSQL and HAProxy on
# loopback; longer than `make check`, run by CI after it.
fleet-test: build
	@scripts/install-deps.sh --fleet
	cd $(BUILD) && PAR_BUILD_DIR=$$PWD PAR_SOURCE_DIR=$(CURDIR) /usr/bin/python3 -m pytest -q \
	    -p no:cacheprovider $(CURDIR)/tests/fleet

bench: deps
	@scripts/install-deps.sh --bench
	bench/run.sh

# libFuzzer harnesses (fuzz/), built with clang: `make fuzz FUZZ_SECONDS=N`
# runs each for N seconds; inputs that fail land in fuzz/crashes/<harness>/,
# which `make check` replays (fuzz/run.sh, docs/security.md "Fuzzing").
BUILD_FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ         ?=
fuzz:
	@scripts/install-deps.sh --fuzz
	@test -f $(BUILD_FUZZ)/CMakeCache.txt || CC=clang cmake -S . -B $(BUILD_FUZZ) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPAR_FUZZ=ON -DPAR_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_all
	fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ)

fuzz-merge:
	fuzz/merge.sh $(BUILD_FUZZ) $(FUZZ)

# The container image (deploy/container/, docs/deployment.md): made with
# podman from a Debian base built by debootstrap (no image registry), then run
# read-only, deployed to, invoked, stopped, and its sandbox layers measured
# (tests/container/). Needs root; takes minutes the first time (the base is
# cached in $(BUILD)/container), so it is not part of `make check`.
container-test: build
	@scripts/install-deps.sh --container
	deploy/container/build.sh $(BUILD)
	cd $(BUILD) && PAR_BUILD_DIR=$$PWD PAR_SOURCE_DIR=$(CURDIR) /usr/bin/python3 -m pytest \
		-q -s -p no:cacheprovider $(CURDIR)/tests/container

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
