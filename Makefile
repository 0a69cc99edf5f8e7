# Thin wrapper over CMake (as neovim's). The two commands a new user types:
#   make demo   install what is missing, build, run bpcc on the bundled examples
#   make test   the same set-up, then the whole test suite (and its sanitizer build)
BUILD      ?= build
ASAN_BUILD ?= build-asan
MAKEFLAGS  += --no-print-directory
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEBS        = llvm-19-dev flex bison libcmocka-dev cmake make gcc zlib1g-dev graphviz libxml2-utils tmux
# `make bench` only: PyTorch for the comparison, and OpenBLAS so that Debian's torch does
# not fall back to the reference BLAS (about 5 GFLOP/s instead of 250 here).
BENCH_DEBS  = python3-torch libopenblas0-pthread

.PHONY: all deps build build-asan demo test test-fast bench clean

all: build

# Install missing Debian packages: apt-get when root, else print the command to run.
deps:
	@missing=""; for p in $(DEBS) $(EXTRA_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "bpcc: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "bpcc: missing Debian packages. Run:"; \
	    echo "  sudo apt-get install -y --no-install-recommends$$missing"; exit 1; \
	  fi; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBPCC_SANITIZE=ON

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	@sh examples/demo.sh $(BUILD)/bpcc

test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

bench:
	@$(MAKE) build EXTRA_DEBS="$(BENCH_DEBS)"
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
