#!/usr/bin/env bash
# Rebuilds the OBELICS Parquet test files in tests/data/obelics/ with an independent writer and
# reader (versions pinned in tests/tools/parquet/package.json, installed into
# third_party/npm/parquet, gitignored): parquet-wasm (arrow-rs) writes each *.parquet,
# hyparquet reads it back into <name>.expected.json, the reference tests/test_parquet.cpp
# compares our reader with. Only needed when the test data changes; the outputs are committed.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=third_party/npm/parquet
mkdir -p "$DIR"
cp tests/tools/parquet/package.json "$DIR/package.json"
(cd "$DIR" && npm install --no-audit --no-fund --no-package-lock >/dev/null)
# Run from next to its node_modules, so that its imports resolve there.
cp tests/tools/parquet/make_obelics_parquet.mjs "$DIR/"
node "$DIR/make_obelics_parquet.mjs" tests/data/obelics
