# The two commands: `make run` (the demo on this machine) and `make test`.
.PHONY: run test setup release image lint bench

run:
	@scripts/run-demo.sh

test:
	@scripts/test.sh

# Installs everything `run` and `test` need, without running them.
setup:
	@scripts/bootstrap.sh --test

# Optimised build; wasm-opt comes from the npm package `binaryen`.
release:
	@scripts/bootstrap.sh
	@scripts/build.sh --release

# The container image (Containerfile) from a release build: podman or docker.
image:
	@scripts/image.sh

# With the flags every build uses (what ships is type-erased), so clippy
# reuses the build scripts and proc macros the tests compiled.
lint:
	cargo fmt --all -- --check
	RUSTFLAGS="--cfg erase_components" cargo clippy --all-targets -- -D warnings
	RUSTFLAGS="--cfg erase_components" cargo clippy -p app --features hydrate --target wasm32-unknown-unknown -- -D warnings

# The runs page against 10,000 runs next to MLflow's API and UI, and launch latency (figures only).
bench:
	@scripts/bench.sh
