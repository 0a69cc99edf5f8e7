# Thin wrapper over CMake (as neovim's). The two commands a new user types:
#   make demo   install what is missing, build, run bpcc on the bundled examples
#   make test   the same set-up, then the whole test suite (and its sanitizer build)
# and  make install [PREFIX=/usr/local] [DESTDIR=]   bin/bpcc, its man page, docs, and
#      find_package(bpcc) for CMake projects (cmake/install.cmake)
BUILD      ?= build
ASAN_BUILD ?= build-asan
MAKEFLAGS  += --no-print-directory
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
DEBS        = llvm-19-dev flex bison libcmocka-dev cmake make gcc zlib1g-dev openmpi-bin libopenmpi-dev graphviz libxml2-utils tmux man-db python3-numpy
# `make bench` only: PyTorch for the comparison, and OpenBLAS so that Debian's torch does
# not fall back to the reference BLAS (about 5 GFLOP/s instead of 250 here).
BENCH_DEBS  = python3-torch libopenblas0-pthread

.PHONY: all deps build build-asan demo test test-fast bench install clean

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

# The prefix is compiled in (where --help says the documentation is when bpcc does not
# find it beside itself), so the build is configured with it first.
install: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j $(JOBS) --target bpcc
	DESTDIR=$(if $(DESTDIR),$(abspath $(DESTDIR))) cmake --install $(BUILD)

bench:
	@$(MAKE) build EXTRA_DEBS="$(BENCH_DEBS)"
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
