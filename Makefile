# banger task runner. `make help` lists the targets.
CARGO ?= cargo

.PHONY: help build guest-agent test lint fmt demo demo-clean smoke hostile bench bench-boot bench-fork bench-net bench-workspace bench-pull clean

help: ## List targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## Build banger, bangerd and the simulator (release).
	$(CARGO) build --release --workspace --bins
	$(MAKE) guest-agent
	cp $(TARGET_DIR)/$(HOST_TRIPLE)/release/banger-guest $(TARGET_DIR)/release/banger-guest

# The guest agent runs in any distribution: static C runtime. The explicit
# --target keeps the flag off build scripts and proc-macros.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
HOST_TRIPLE ?= x86_64-unknown-linux-gnu
guest-agent: ## Build the static guest agent (banger-guest) for the host's target.
	RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols' $(CARGO) build --release -p banger-guest --target $(HOST_TRIPLE)

lint: ## rustfmt, clippy (warnings are errors), doc sizes and relative links.
	./scripts/check-docs.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint ## Lint, then every test of the workspace (root-only tests run as root).
	$(CARGO) test --workspace

fmt: ## Format the code.
	$(CARGO) fmt --all

demo: ## Build, start a dev bangerd and run the main job as far as this host allows.
	./scripts/demo.sh

demo-clean: ## Remove everything `make demo` created (VMs, images, daemon, state, its ssh-config include and key).
	./scripts/demo.sh clean

smoke: ## The system path for real (root): install, use, restart, uninstall in a systemd-nspawn container (docs/system-path.md).
	./scripts/smoke/run.sh

hostile: ## The hostile-client suites (root): every privileged operation attacked; prints the total tried and accepted outside the rules.
	@$(CARGO) test -p banger-roothelper --test hostile_disk_net --test hostile_sockets --test hostile_process -- --nocapture 2>&1 \
	  | tee /dev/stderr | awk '/^hostile .*: tried [0-9]+, accepted outside the rules [0-9]+/ { t += $$(NF-5); m += $$NF; n++ } \
	    END { printf "hostile (all %d suites): tried %d, accepted outside the rules %d\n", n, t, m; exit (n == 3 && m == 0) ? 0 : 1 }'

bench: ## Lifecycle on the default configuration (root: private netns; create overhead, 20 concurrent creates/s), 200-VM stats load, helper round trip.
	$(CARGO) bench -p banger --bench lifecycle
	$(CARGO) bench -p banger --bench stats_load
	$(CARGO) bench -p banger-roothelper --bench helper_rtt

bench-boot: ## vm create -> ready of the default image under the QEMU front, 5 boots, vs the same QEMU command without banger (root).
	$(CARGO) bench -p banger --bench boot

bench-fork: ## vm fork -> ready vs a cold vm create (p50/p95, ratio), suspend/start times and snapshot size under the QEMU front (needs the kernel cache, QEMU, busybox).
	$(CARGO) bench -p banger --bench fork

bench-net: ## Network benchmark (root): vm. DNS qps vs dnsmasq, TAP-from-pool start path.
	$(CARGO) bench -p banger-daemon --bench network

bench-workspace: ## workspace prepare vs git archive|ssh and rsync over one local sshd (root).
	$(CARGO) bench -p banger --bench workspace

bench-pull: ## Image pull+flatten vs skopeo+umoci+mkfs.ext4, and root-disk creation time (root).
	$(CARGO) bench -p banger-daemon --bench pull

clean: ## Remove build output.
	$(CARGO) clean
