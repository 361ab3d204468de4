# netatopd: the two commands of the README are `make run` and `make test`.
CARGO ?= cargo
# Paths made absolute without splitting a checkout path that has spaces
# ($(abspath) would).
abs = $(if $(filter /%,$(firstword $(1))),$(1),$(CURDIR)/$(1))
ATOP_DIR ?= target/atop
# Root file systems the systemd tests boot (tests/rootfs.sh).
ROOTFS_DIR ?= target/rootfs
# Debian's 5.10, 6.1 and 6.12 kernels the VM tests boot (tests/vm/kernels.sh).
KERNELS_DIR ?= target/kernels
# Debian's promtool and node_exporter, unpacked for the cgroup tests
# (tests/prometheus-tools.sh).
PROMETHEUS_DIR ?= target/prometheus
# The fresh Debian 12 the README's commands are tried on (tests/fresh-machine.sh).
FRESH_DIR ?= target/fresh
# The tests' private apt configuration (tests/debian-apt.sh), shared by every
# download from other Debian releases.
export NETATOPD_APT_DIR ?= $(call abs,target/apt)

# libbpf's own Makefile, which the libbpf-sys crate runs inside cargo's
# target directory to build the vendored libbpf, fails in a path with a
# space. Where the checkout's path has one, cargo builds through a link
# to target/ at a path without.
ifneq ($(word 2,$(CURDIR)),)
export CARGO_TARGET_DIR := $(or $(TMPDIR),/tmp)/netatopd-target-$(shell printf '%s' '$(CURDIR)' | cksum | cut -d' ' -f1)
$(shell mkdir -p target && ln -sfn '$(CURDIR)/target' '$(CARGO_TARGET_DIR)')
endif

# Where `make install` puts things (DESTDIR for staging, as usual).
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
# systemd reads units from /usr/local/lib/systemd/system too.
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

# Which build `make run`, `make install` and `make deb` take their binaries
# from (release or debug).
PROFILE ?= release
# The release build is static (glibc's own static archives, crt-static):
# its binaries, and the package, need nothing at run time and run on any
# distribution's userland, Debian 11's glibc 2.31 as well as the build
# machine's. Cargo builds static only for a --target given (proc macros
# cannot be static), so the release binaries are in target/$(TARGET)/release.
TARGET ?= x86_64-unknown-linux-gnu
# The machine's own target. Another TARGET (aarch64-unknown-linux-gnu) is
# cross-built with Debian's Rust and C compilers for it, which `make build`
# sets up first in target/cross/TARGET (tests/install-cross-deps.sh); the
# build's shell takes their paths from its env.sh.
HOST_TARGET = x86_64-unknown-linux-gnu
CROSS = $(filter-out $(HOST_TARGET),$(TARGET))
cross_dir = $(or $(CARGO_TARGET_DIR),target)/cross/$(1)
cross_env = . '$(call cross_dir,$(1))/env.sh' &&
CROSS_DIR = $(call cross_dir,$(TARGET))
CROSS_ENV = $(if $(CROSS),$(call cross_env,$(TARGET)),)
# The Debian architecture of TARGET, for the image's name and metadata.
ARCH = $(if $(filter aarch64-%,$(TARGET)),arm64,amd64)
RELEASE = $(filter release,$(PROFILE))
OUT = $(if $(RELEASE),target/$(TARGET)/release,target/$(PROFILE))
CARGO_PROFILE_FLAG = $(if $(RELEASE),--release --target $(TARGET),)
CRT_STATIC = RUSTFLAGS="-C target-feature=+crt-static"
STATIC = $(if $(RELEASE),$(CRT_STATIC),)
COMPLETIONS = $(OUT)/completions
# The binaries that write the completions: TARGET's own, or the machine's
# when TARGET's cannot run here (the options are the same).
COMPLETER = $(if $(CROSS),target/$(HOST_TARGET)/release,$(OUT))
# cargo-deb, installed into the target directory at a fixed version.
CARGO_DEB_VERSION ?= 3.8.0
TOOLS := target/tools

.PHONY: deps test-deps build run test bench completions install uninstall deb image arm64-suites

# What building needs (clang, the static libelf and zlib, ...).
deps:
	bash tests/install-build-deps.sh
	$(if $(CROSS),bash tests/install-cross-deps.sh $(TARGET) '$(CROSS_DIR)')

# What only the tests need (qemu, debootstrap, lintian, ...).
test-deps:
	bash tests/install-test-deps.sh

build: deps
	$(CROSS_ENV) $(STATIC) $(CARGO) build $(CARGO_PROFILE_FLAG) --bins

# Builds and runs netatopd in the foreground on /run/netatop-bpf-socket.
run: build
	./$(OUT)/netatopd --foreground

# Sets up (packages, a private atop 2.11.1, Debian 11, 12 and 13 root file
# systems with systemd, Debian's 5.10, 6.1 and 6.12 kernels, Debian's
# promtool and node_exporter unpacked, not installed) and passes every
# test: unit and kernel tests, every way of attaching on the kernels that
# take it (booted under qemu), the unit under systemd, man pages, `make
# install`, the Debian package and lintian, and the README's commands on a
# fresh Debian 12; the container image run as the Kubernetes DaemonSet's
# pod template. It leaves /etc/apt as it found it, and checks that it did.
test:
	bash tests/etc-apt.sh record target/etc-apt.before
	bash tests/install-build-deps.sh
	bash tests/install-test-deps.sh
	bash tests/atop-setup.sh "$(ATOP_DIR)"
	bash tests/rootfs.sh "$(ROOTFS_DIR)" bullseye bookworm trixie
	bash tests/vm/kernels.sh "$(KERNELS_DIR)"
	bash tests/vm/kernels.sh "$(KERNELS_DIR)" arm64
	bash tests/vm/arm64-root.sh "$(ROOTFS_DIR)"
	bash tests/prometheus-tools.sh "$(PROMETHEUS_DIR)"
	$(MAKE) image
	$(MAKE) arm64-suites
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	NETATOPD_TEST_ATOP="$(call abs,$(ATOP_DIR))/atop" NETATOPD_TEST_ROOTFS="$(call abs,$(ROOTFS_DIR))" \
	    NETATOPD_TEST_KERNELS="$(call abs,$(KERNELS_DIR))" \
	    NETATOPD_TEST_PROMETHEUS="$(call abs,$(PROMETHEUS_DIR))" $(CARGO) test --workspace
	# Snapshots as kernels before 6.7 take them (with threads' counters in
	# task storage, as 5.13 to 6.6 keep them), on this kernel: the suites
	# that read counters, again; then with threads' counters in a hash map
	# as well, as before 5.13 (and the wire's, but for real atop, and the
	# cgroups'). A way this host refuses is named and left out
	# (tests/host-round.sh); the booted kernels above run every way.
	bash tests/host-round.sh snapshot=map-walk -- $(CARGO) test -p netatopd-tests --test tiers \
	    --test accounting --test threads --test pid_reuse --test restart --test scale \
	    --test clients --test hostile
	NETATOPD_TEST_PROMETHEUS="$(call abs,$(PROMETHEUS_DIR))" bash tests/host-round.sh \
	    snapshot=map-walk thread-counters=hash-map -- $(CARGO) test \
	    -p netatopd-tests --test tiers --test accounting --test threads --test pid_reuse \
	    --test scale --test wire --test cgroups -- --skip real_atop
	bash tests/package.sh
	bash tests/package.sh arm64
	NETATOPD_TEST_KERNELS="$(call abs,$(KERNELS_DIR))" NETATOPD_TEST_ROOTFS="$(call abs,$(ROOTFS_DIR))" \
	    bash tests/vm/package.sh
	bash tests/fresh-machine.sh "$(FRESH_DIR)"
	bash tests/etc-apt.sh check target/etc-apt.before

# The aarch64 build and the suites the arm64 guests run on it
# (tests/tests/kernels.rs): static, like the release binaries, in
# target/aarch64-unknown-linux-gnu/release; the arm64 package and image.
ARM64 = aarch64-unknown-linux-gnu
arm64-suites:
	$(MAKE) deb image TARGET=$(ARM64)
	$(call cross_env,$(ARM64)) $(CRT_STATIC) $(CARGO) test --release --target $(ARM64) \
	    --no-run -p netatopd-tests --test tiers --test cgroups --test wire

# The benchmark suite (root; several minutes): results in target/bench.md,
# recorded in BENCHMARKS.md.
bench: PROFILE = release
bench: build
	./$(OUT)/netatop-bench | tee target/bench.md

# Shell completions, generated by the binaries from their own options.
completions: build
	$(if $(CROSS),$(MAKE) build TARGET=$(HOST_TARGET) PROFILE=release)
	mkdir -p $(COMPLETIONS)
	for sh in bash zsh fish; do \
	    ./$(COMPLETER)/netatopd --completions $$sh > $(COMPLETIONS)/netatopd.$$sh && \
	    ./$(COMPLETER)/netatopctl completions $$sh > $(COMPLETIONS)/netatopctl.$$sh || exit 1; \
	done

install: completions
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(BASHCOMPDIR) \
	    $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 0755 $(OUT)/netatopd $(DESTDIR)$(SBINDIR)/netatopd
	install -m 0755 $(OUT)/netatopctl $(DESTDIR)$(BINDIR)/netatopctl
	install -m 0644 man/netatopd.8 man/netatopctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/netatop-protocol.5 $(DESTDIR)$(MANDIR)/man5/
	sed 's|/usr/sbin/netatopd|$(SBINDIR)/netatopd|' netatopd/systemd/netatopd.service \
	    > $(DESTDIR)$(UNITDIR)/netatopd.service
	sed 's|/usr/bin/netatopctl|$(BINDIR)/netatopctl|' netatopd/systemd/metrics/netatopd-metrics.service \
	    > $(DESTDIR)$(UNITDIR)/netatopd-metrics.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/netatopd.service $(DESTDIR)$(UNITDIR)/netatopd-metrics.service
	for b in netatopd netatopctl; do \
	    install -m 0644 $(COMPLETIONS)/$$b.bash $(DESTDIR)$(BASHCOMPDIR)/$$b && \
	    install -m 0644 $(COMPLETIONS)/$$b.zsh $(DESTDIR)$(ZSHCOMPDIR)/_$$b && \
	    install -m 0644 $(COMPLETIONS)/$$b.fish $(DESTDIR)$(FISHCOMPDIR)/$$b.fish || exit 1; \
	done
	# An admin's settings are never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/netatopd ] || \
	    install -m 0644 netatopd/systemd/netatopd.default $(DESTDIR)$(SYSCONFDIR)/default/netatopd
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/netatopd-metrics ] || \
	    install -m 0644 netatopd/systemd/netatopd-metrics.default \
	    $(DESTDIR)$(SYSCONFDIR)/default/netatopd-metrics
	@echo "installed; as root: systemctl daemon-reload && systemctl enable --now netatopd"

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/netatopd $(DESTDIR)$(BINDIR)/netatopctl \
	    $(DESTDIR)$(MANDIR)/man8/netatopd.8 $(DESTDIR)$(MANDIR)/man8/netatopctl.8 \
	    $(DESTDIR)$(MANDIR)/man5/netatop-protocol.5 $(DESTDIR)$(UNITDIR)/netatopd.service \
	    $(DESTDIR)$(UNITDIR)/netatopd-metrics.service
	for b in netatopd netatopctl; do \
	    rm -f $(DESTDIR)$(BASHCOMPDIR)/$$b $(DESTDIR)$(ZSHCOMPDIR)/_$$b $(DESTDIR)$(FISHCOMPDIR)/$$b.fish; \
	done
	# Settings are removed only if nobody changed them.
	if cmp -s netatopd/systemd/netatopd.default $(DESTDIR)$(SYSCONFDIR)/default/netatopd; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/default/netatopd; \
	fi
	if cmp -s netatopd/systemd/netatopd-metrics.default \
	    $(DESTDIR)$(SYSCONFDIR)/default/netatopd-metrics; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/default/netatopd-metrics; \
	fi

# The container image (deploy/container/Containerfile: the static binaries
# and nothing else), built with podman, as an OCI archive:
# target/netatopd-image.tar (for another TARGET, target/netatopd-image-ARCH.tar,
# an image of that architecture). deploy/kubernetes/netatopd.yaml runs it.
IMAGE = target/netatopd-image$(if $(CROSS),-$(ARCH)).tar
image: PROFILE = release
image: build
	bash deploy/container/build.sh $(OUT) $(IMAGE) $(ARCH)

# The Debian package (metadata in netatopd/Cargo.toml): target/debian/*.deb.
deb: PROFILE = release
deb: completions
	[ -x $(TOOLS)/bin/cargo-deb ] && $(TOOLS)/bin/cargo-deb --version | grep -qx 'cargo-deb $(CARGO_DEB_VERSION)' || \
	    $(CARGO) install --quiet --locked --root $(TOOLS) cargo-deb --version $(CARGO_DEB_VERSION)
	$(TOOLS)/bin/cargo-deb --no-build -p netatopd --target $(TARGET) --output target/debian/ > target/debian.path
	# cargo-deb writes an empty "Depends:" for binaries that need nothing
	# (static): the package is rebuilt without it.
	rm -rf target/debian/unpacked
	dpkg-deb -R "$$(cat target/debian.path)" target/debian/unpacked
	sed -i '/^Depends: *$$/d' target/debian/unpacked/DEBIAN/control
	dpkg-deb -b --root-owner-group -Zxz target/debian/unpacked "$$(cat target/debian.path)" >/dev/null
	rm -rf target/debian/unpacked target/debian.path
