#!/usr/bin/env bash
# Run the whole test suite: fetch (or reuse) the real test models, then every crate's tests.
# Test builds optimise the engine's crates (see [profile.dev.package.*] in Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh
cargo test --workspace --locked
