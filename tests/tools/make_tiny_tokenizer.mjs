// Writes the hand-made tokenizer used by tests/test_tokenizer_tiny.cpp and the inputs that
// tests/tools/reference_tokenize.mjs turns into its expected results:
//   tests/data/tokenizer_tiny.json             Qwen-shaped tokenizer.json with a few merges
//   tests/data/tokenizer_tiny_corpus.jsonl     texts to encode
//   tests/data/tokenizer_tiny_decode_ids.jsonl id lists to decode
// Usage: node tests/tools/make_tiny_tokenizer.mjs [repo_root]
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const root = process.argv[2] ?? ".";
const data = join(root, "tests/data");

// GPT-2 byte-level alphabet.
const selfMapped = (b) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
const byteChar = [];
for (let b = 0, next = 256; b < 256; ++b) byteChar.push(String.fromCodePoint(selfMapped(b) ? b : next++));

// Byte tokens get ids in the order of their characters, so an id is not its byte value.
const vocab = {};
[...byteChar].sort((a, b) => a.codePointAt(0) - b.codePointAt(0)).forEach((c, i) => (vocab[c] = i));
const merges = [
  ["b", "c"], ["a", "b"], ["a", "a"], ["aa", "aa"], ["Ġ", "a"], ["Ġa", "bc"],
  ["Ã", "©"], ["c", "Ã©"], ["Ġ", "Ġ"], ["ĠĠ", "Ġ"], ["'", "s"], ["Ċ", "Ċ"], ["1", "2"],
];
for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;

const base = Object.keys(vocab).length;
const added = (content, flags = {}) => ({
  content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...flags,
});
const addedTokens = [
  added("<|im_start|>"), added("<|im_end|>"), added("<|image_pad|>"),
  added("<|a|>"), added("<|a|>b"),                       // longest match wins
  added("<think>", { special: false }),                  // plain added token
  added("[L]", { lstrip: true }), added("[R]", { rstrip: true }),
  added("[W]", { single_word: true }),
  added("é!", { special: false, normalized: true }),     // matched after NFC
].map((t, i) => ({ id: base + i, ...t }));

const tokenizer = {
  version: "1.0", truncation: null, padding: null,
  added_tokens: addedTokens,
  normalizer: { type: "NFC" },
  pre_tokenizer: {
    type: "Sequence",
    pretokenizers: [
      {
        type: "Split",
        pattern: {
          Regex:
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        behavior: "Isolated", invert: false,
      },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  },
  post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
  decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
    fuse_unk: false, byte_fallback: false, ignore_merges: false,
    vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
  },
};
writeFileSync(join(data, "tokenizer_tiny.json"), JSON.stringify(tokenizer, null, 1) + "\n");

const corpus = [
  "abc", "abd", "aaa", "aaaa", "aaaaa", " abc", " ab c", "cabc", "café", "cafe\u0301", "caf\u00e9!", "cafe\u0301!",
  "a's", "12 123", "a   b", "a\n\n\nb", "  ", "x<|im_start|>y<|im_end|>", "<|image_pad|><|image_pad|>",
  "<|a|>bc <|a|>c <|a|", "<think>aa</think>", "a  [L]  b", "a  [R]  b", "[L][R] [L]", "x[W]y", "x [W] y", "[W]",
  "_[W]_", "é[W]", "<|im_start", "ab<|im_end|>ab",
];
writeFileSync(join(data, "tokenizer_tiny_corpus.jsonl"), corpus.map((s) => JSON.stringify(s)).join("\n") + "\n");

const id = (t) => vocab[t] ?? addedTokens.find((a) => a.content === t).id;
const decodeIds = [
  [id("Ã©")], [id("Ã")], [id("©")], [id("c"), id("Ã")], [id("Ã"), id("Ã©")], [id("<|im_start|>"), id("a"), id("<|im_end|>")],
  [id("<think>"), id("Ġa"), id("<|image_pad|>")], [id("Ġ"), id("Ċ")], [],
];
writeFileSync(join(data, "tokenizer_tiny_decode_ids.jsonl"), decodeIds.map((s) => JSON.stringify(s)).join("\n") + "\n");
console.log(`tiny tokenizer: ${Object.keys(vocab).length} vocab entries, ${addedTokens.length} added tokens`);
