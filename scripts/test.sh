#!/usr/bin/env bash
# Run the whole test suite: fetch (or reuse) the real test models, install what the web app's
# tests need (Debian's Chromium, Node.js), then the page scripts' tests and every crate's tests.
# Test builds optimise the engine's crates (see [profile.dev.package.*] in Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "install ${missing[*]} (Debian packages) for the web app's tests"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

node --test crates/webapp/assets/tests/
cargo test --workspace --locked
