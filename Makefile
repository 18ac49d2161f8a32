# oci-systemd-hook
#   make              build the hook (release)
#   make install      install binary + hooks.d descriptor, the runtime wrapper's
#                     link and the Docker/containerd snippets (PREFIX, DESTDIR)
#   make demo         set up the host, boot a systemd container with the hook
#   make test         everything: unit, privileged and podman integration tests (root)
#   make vm-integration  CI's slice of the VM matrix: a unified and a legacy VM (root)
#   make matrix       every VM and run: unified (+userns, +Docker/machined), hybrid, legacy, trixie (root)
#   make docs         the man page (go-md2man)
#   make dist         source tarball with vendored crates; make rpm builds the RPM

PREFIX     ?= /usr
LIBEXECDIR ?= $(PREFIX)/libexec/oci/hooks.d
HOOKSDIR   ?= $(PREFIX)/share/containers/oci/hooks.d
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share/oci-systemd-hook
CARGO      ?= cargo
BATS       ?= bats
# cargo builds for rustc's host tuple (.cargo/config.toml): target/<tuple>/release.
# Without rustc (root running `make install`): the tuple of a linux-gnu host.
RUSTC      ?= rustc
TRIPLE     ?= $(or $(shell $(RUSTC) -vV 2>/dev/null | sed -n 's/^host: //p'),$(shell uname -m)-unknown-linux-gnu)
BIN        := target/$(TRIPLE)/release/oci-systemd-hook
MAN        := doc/oci-systemd-hook.1
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST       := build/oci-systemd-hook-$(VERSION).tar.gz

export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: bench all build docs dist rpm rpm-check manifests-check install uninstall setup rootfs demo test test-unit test-privileged integration suites vm-integration matrix vagrant-validate clean

all: build

build:
	$(CARGO) build --release --locked

docs: $(MAN)

$(MAN): doc/oci-systemd-hook.1.md
	@command -v go-md2man >/dev/null || { echo "go-md2man is missing (apt-get install go-md2man / dnf install golang-github-cpuguy83-md2man)"; exit 1; }
	go-md2man -in $< -out $@

# No rebuild here: `make` as your user, then `sudo make install` (root often
# has no cargo).
install: $(MAN)
	@test -x $(BIN) || { echo "$(BIN) is missing: run 'make' first (as the user who has cargo)"; exit 1; }
	install -D -m 0755 $(BIN) $(DESTDIR)$(LIBEXECDIR)/oci-systemd-hook
	install -D -m 0644 $(MAN) $(DESTDIR)$(MANDIR)/man1/oci-systemd-hook.1
	install -d $(DESTDIR)$(HOOKSDIR)
	sed 's|/usr/libexec/oci/hooks.d/oci-systemd-hook|$(LIBEXECDIR)/oci-systemd-hook|' \
		hooks.d/oci-systemd-hook.json > $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json
	chmod 0644 $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json
	ln -sf oci-systemd-hook $(DESTDIR)$(LIBEXECDIR)/oci-systemd-runtime
	install -d $(DESTDIR)$(DATADIR)/docker $(DESTDIR)$(DATADIR)/containerd
	sed 's|/usr/libexec/oci/hooks.d/oci-systemd-|$(LIBEXECDIR)/oci-systemd-|' \
		deploy/docker/daemon.json > $(DESTDIR)$(DATADIR)/docker/daemon.json
	sed 's|/usr/libexec/oci/hooks.d/oci-systemd-|$(LIBEXECDIR)/oci-systemd-|' \
		deploy/containerd/oci-systemd.toml > $(DESTDIR)$(DATADIR)/containerd/oci-systemd.toml
	chmod 0644 $(DESTDIR)$(DATADIR)/docker/daemon.json $(DESTDIR)$(DATADIR)/containerd/oci-systemd.toml

uninstall:
	rm -f $(DESTDIR)$(LIBEXECDIR)/oci-systemd-hook $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json \
		$(DESTDIR)$(MANDIR)/man1/oci-systemd-hook.1 $(DESTDIR)$(LIBEXECDIR)/oci-systemd-runtime \
		$(DESTDIR)$(DATADIR)/docker/daemon.json $(DESTDIR)$(DATADIR)/containerd/oci-systemd.toml
	-rmdir $(DESTDIR)$(DATADIR)/docker $(DESTDIR)$(DATADIR)/containerd $(DESTDIR)$(DATADIR)
	-rmdir $(DESTDIR)$(LIBEXECDIR)

# The committed tree (git archive) plus every crate vendored, so that an RPM
# builds offline.
dist:
	rm -rf build/dist && mkdir -p build/dist/oci-systemd-hook-$(VERSION)/.cargo
	git archive HEAD | tar -x -C build/dist/oci-systemd-hook-$(VERSION)
	cd build/dist/oci-systemd-hook-$(VERSION) && \
		$(CARGO) vendor --locked -q vendor >> .cargo/config.toml
	tar -C build/dist -czf $(DIST) oci-systemd-hook-$(VERSION)
	rm -rf build/dist
	@echo $(DIST)

rpm: dist
	integration/build-rpm.sh $(DIST)

rpm-check: rpm
	integration/check-rpm.sh build/rpm/RPMS/*/oci-systemd-hook-$(VERSION)-*.rpm

setup:
	integration/setup-host.sh

rootfs: setup
	integration/build-rootfs.sh

demo:
	integration/demo.sh

test: setup
	$(MAKE) test-unit
	$(MAKE) test-privileged
	$(MAKE) integration
	$(MAKE) vm-integration
	$(MAKE) rpm-check
	$(MAKE) manifests-check
	$(MAKE) vagrant-validate

test-unit:
	$(CARGO) test --locked --lib --bins --test cli

test-privileged:
	$(CARGO) test --locked --test privileged --test hostile --test config_differential --test chroot --test cost -- --test-threads=1

# The conformance suite: podman with crun, podman with runc, bare runc, Docker
# and containerd through the runtime wrapper (integration/docker.bats); then
# the Debian suites bullseye..sid and the services image (suites.bats).
integration: build rootfs
	integration/run-suite.sh
	$(MAKE) suites

# Each Debian suite's systemd (247..262) under podman+crun, podman+runc and
# bare runc on this host; the images are built once (build-rootfs.sh SUITE).
suites: build setup
	$(BATS) --timing integration/suites.bats

# The conformance suite inside Debian VMs (QEMU, offline): CI's slice, a
# unified and a legacy cgroup layout VM (integration/vm/run.sh says which
# runs); about 12 minutes under software emulation on a quiet machine.
vm-integration: build
	OSH_VM_SET=ci integration/vm/run.sh

# Every VM and every run: unified (+ userns/rootless, + Docker and
# systemd-machined), hybrid, legacy, and a trixie guest (podman 5.4); the
# podman and bare runc boots with the bookworm and the sid image each. About
# an hour under software emulation; its last result is in the README.
matrix: build
	OSH_VM_SET=matrix integration/vm/run.sh

# A benchmark, not a test: prints the hook's latency, RSS and end-to-end cost.
bench: rootfs
	OSH_ROOTFS=$$(integration/build-rootfs.sh) $(CARGO) bench --locked --bench hook

# The Kubernetes manifests against the Kubernetes schemas; the CRI-O drop-in.
manifests-check:
	integration/check-manifests.sh

# The Vagrantfile cannot boot here (no Fedora box offline); check it parses.
vagrant-validate:
	@command -v vagrant >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends vagrant vagrant-libvirt; }
	vagrant validate

clean:
	$(CARGO) clean
	rm -rf build $(MAN)
