# netatopd: the two commands of the README are `make run` and `make test`.
CARGO ?= cargo
ATOP_DIR ?= target/atop

.PHONY: deps build run test bench

deps:
	bash tests/install-deps.sh

build: deps
	$(CARGO) build --release --bins

# Builds and runs netatopd in the foreground on /run/netatop-bpf-socket.
run: build
	./target/release/netatopd --foreground

# Sets up (packages, a private atop 2.11.1) and passes every test.
test: deps
	bash tests/atop-setup.sh $(ATOP_DIR)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	NETATOPD_TEST_ATOP=$(abspath $(ATOP_DIR))/atop $(CARGO) test --workspace

# The benchmark suite (root; several minutes): results in target/bench.md,
# recorded in BENCHMARKS.md.
bench: build
	./target/release/netatop-bench | tee target/bench.md
