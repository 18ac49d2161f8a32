# oci-systemd-hook
#   make              build the hook (release)
#   make install      install binary + hooks.d descriptor (PREFIX, DESTDIR)
#   make demo         set up the host, boot a systemd container with the hook
#   make test         everything: unit, privileged and podman integration tests (root)

PREFIX     ?= /usr
LIBEXECDIR ?= $(PREFIX)/libexec/oci/hooks.d
HOOKSDIR   ?= $(PREFIX)/share/containers/oci/hooks.d
CARGO      ?= cargo
BATS       ?= bats
BIN        := target/release/oci-systemd-hook

export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build install uninstall setup rootfs demo test test-unit test-privileged integration vagrant-validate clean

all: build

build:
	$(CARGO) build --release --locked

# No rebuild here: `make` as your user, then `sudo make install` (root often
# has no cargo).
install:
	@test -x $(BIN) || { echo "$(BIN) is missing: run 'make' first (as the user who has cargo)"; exit 1; }
	install -D -m 0755 $(BIN) $(DESTDIR)$(LIBEXECDIR)/oci-systemd-hook
	install -d $(DESTDIR)$(HOOKSDIR)
	sed 's|/usr/libexec/oci/hooks.d/oci-systemd-hook|$(LIBEXECDIR)/oci-systemd-hook|' \
		hooks.d/oci-systemd-hook.json > $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json
	chmod 0644 $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json

uninstall:
	rm -f $(DESTDIR)$(LIBEXECDIR)/oci-systemd-hook $(DESTDIR)$(HOOKSDIR)/oci-systemd-hook.json

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
	$(MAKE) vagrant-validate

test-unit:
	$(CARGO) test --locked --lib --bins --test cli

test-privileged:
	$(CARGO) test --locked --test privileged --test hostile -- --test-threads=1

# The conformance suite: podman with crun, podman with runc, bare runc.
integration: build rootfs
	integration/run-suite.sh

# The Vagrantfile cannot boot here (no Fedora box offline); check it parses.
vagrant-validate:
	@command -v vagrant >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends vagrant vagrant-libvirt; }
	vagrant validate

clean:
	$(CARGO) clean
