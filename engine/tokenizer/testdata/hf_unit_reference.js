// Generates unit_reference.json: what Hugging Face tokenizers (the Rust
// library, through its official Node binding) returns for the small
// handwritten tokenizers and texts of unit_cases.json.
//
//   npm install --prefix /tmp/hftok tokenizers@0.23.2
//   NODE_PATH=/tmp/hftok/node_modules node hf_unit_reference.js unit_cases.json unit_reference.json
//
// Output format matches hf_reference.json, with "tokenizer" naming an entry
// of unit_cases.json's "tokenizers".
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const version = require('tokenizers/package.json').version;

async function main() {
  const [casesPath, outPath] = process.argv.slice(2);
  if (!casesPath || !outPath) {
    throw new Error('usage: node hf_unit_reference.js CASES.json OUT.json');
  }
  const spec = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
  const cases = [];
  for (const group of spec.cases) {
    const def = spec.tokenizers[group.tokenizer];
    if (!def) throw new Error(`unknown tokenizer ${group.tokenizer}`);
    const tok = def.path ? Tokenizer.fromFile(def.path) : Tokenizer.fromString(JSON.stringify(def));
    for (const text of group.texts) {
      for (const addSpecial of [false, true]) {
        const enc = await tok.encode(text, null, { addSpecialTokens: addSpecial });
        const ids = Array.from(enc.getIds());
        cases.push({
          tokenizer: group.tokenizer,
          text,
          add_special: addSpecial,
          ids,
          decoded: await tok.decode(ids, false),
          decoded_skip_special: await tok.decode(ids, true),
        });
      }
    }
  }
  // Decoding of given id sequences, including ones no encoding produces
  // (invalid UTF-8 from byte tokens, special tokens mid-text).
  const decodes = [];
  for (const group of spec.decodes || []) {
    const def = spec.tokenizers[group.tokenizer];
    const tok = def.path ? Tokenizer.fromFile(def.path) : Tokenizer.fromString(JSON.stringify(def));
    for (const ids of group.ids) {
      decodes.push({
        tokenizer: group.tokenizer,
        ids,
        decoded: await tok.decode(ids, false),
        decoded_skip_special: await tok.decode(ids, true),
      });
    }
  }
  fs.writeFileSync(outPath, JSON.stringify({ tokenizers_version: version, cases, decodes }, null, 1) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
