// Writes tests/data/tokenizer_corpus.jsonl (one JSON string per line): hand-written strings that
// exercise the Qwen pre-tokenizer, normalizer and added tokens, followed by every caption (.txt
// member) of the sample shard data/cc12m-train-0000.tar in member-name order.
// Usage: node tests/tools/make_tokenizer_corpus.mjs [repo_root]
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const root = process.argv[2] ?? ".";
const shard = join(root, "data/cc12m-train-0000.tar");
const out = join(root, "tests/data/tokenizer_corpus.jsonl");

const handwritten = [
  // Empty and tiny inputs.
  "", " ", "a", "\n", "'",
  // Latin with accents, in NFC and in decomposed (NFD) form.
  "Café naïve façade — résumé, Ærøskøbing, Straße, İstanbul, Łódź, Đakovo, señor",
  "Cafe\u0301 nai\u0308ve fac\u0327ade", "A\u030angstro\u0308m \u212b \u2126",
  "e\u0301\u0301 o\u0323\u0302 \u1e9b\u0323", "\u0041\u0308\u0304 \u0061\u0328\u0301",
  "ﬁ ﬂ ligatures and ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
  // Cyrillic, Greek, Arabic, Hebrew, Hindi, Thai.
  "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα κόσμε!",
  "مرحبا بالعالم، كيف حالك؟ الأرقام: ١٢٣٤٥ و 67890.",
  "שָׁלוֹם עולם! זה מבחן של טקסט בעברית.",
  "नमस्ते दुनिया, यह एक परीक्षण है। संख्या १२३४ और क्षत्रिय।",
  "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ ๑๒๓",
  // Chinese, Japanese, Korean (Hangul also as conjoining jamo, which NFC composes).
  "你好，世界！今天天气很好。我们去公园散步吧。人工智能正在改变世界。",
  "𠀀𠀁𠀂 繁體中文與简体中文混合：龍龙、馬马。",
  "こんにちは世界。カタカナとひらがなと漢字を混ぜた文章です。ｶﾀｶﾅ半角ﾃｽﾄ。",
  "안녕하세요 세계! 한국어 문장입니다. 테스트 123.",
  "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af",
  // Code snippets.
  "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
  "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
  "{\"key\": [1, 2.5e-3, null, true], \"nested\": {\"a\": \"b\"}}",
  "for i in $(seq 1 10); do echo \"$i\" | tr -d '\\n'; done && ls -la ~/.config",
  "const re = /^[a-z_][a-z0-9_]*$/i; x => x?.y ?? z; a !== b || c >>>= 2;",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
  "    indented\n        more\n\t\tmixed \t tabs\t\n",
  // Emoji: skin tones, ZWJ sequences, flags, variation selectors, keycaps.
  "👍 👍🏽 👨‍👩‍👧‍👦 👩🏿‍💻 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 😀😃😄 1️⃣ #️⃣",
  "I love it 😂😂😂!!! 🙏🏻🙏🏻 so good🔥",
  // Whitespace runs: spaces, tabs, CR LF, trailing and leading, Unicode spaces.
  "a  b   c    d", "  leading", "trailing   ", "\t\ttabs\t", "   ",
  "line1\nline2\r\nline3\r\n\r\nline4\n\n\n", "   \n   \n  x", " \r\n \r\n", "\r\r\r", "a\n \nb",
  "no\u00a0break \u3000ideographic\u2003em\u202fnarrow\u2028line\u2029para",
  "x\u0085y next-line and \ufeffbyte order mark", "zero\u200bwidth joiner\u200dhere",
  "a \u0085b \u0085\n a\u00a0\u00a0b \ufeff\ufeff x",
  "ctrl\u0000nul\u0007bell\u001bescape\u007fdel",
  // Numbers of many digits and other numeric characters.
  "12345678901234567890 3.14159 1,000,000 -42 +7e10 0x1F 2024-01-01 12:30",
  "Ⅻ ½ ² ³ ٣٤٥ ۱۲۳ 𝟘𝟙𝟚 ①②③",
  // Contractions in various cases and positions.
  "I'm, you're, he's, they've, we'll, I'd, don't, CAN'T, YOU'LL, He'S, WE'RE, They'Ve",
  "'s 're 'LL 'lL 'D 'M 'T 'x ''s rock 'n' roll it's'",
  "it'ſ ſtraße 'İ 'K", "x'ſTa x'SA x'RE x'rE x'LLama xyz'ſa x'\u212aay",
  // Added tokens inside text, partial and unknown ones.
  "a<|im_start|>b<|image_pad|><|image_pad|>",
  "<|im_start|>user\nDescribe this image.<|vision_start|><|image_pad|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n",
  "<|video_pad|><|endoftext|><|endoftext|>", "<|im_start", "<|unknown|> <|im_end |>",
  "<think>\nreasoning here\n</think>\n\nanswer", "<<|endoftext|>> x<tool_call>{}</tool_call>y",
  " <|im_start|> spaced <|im_end|> ",
  // Repeated characters and punctuation runs.
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "!!!!!!!!!!!!???? ............ ================ -----\n-----",
  "hello123world abc_def $100.00 e.g. U.S.A. 50% off! (really?) [yes] {no}",
  "https://example.com/path/to/page?q=1&x=y#frag user@example.org",
  "Ünïcödé 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \ue000 private ✓ ✗ → ← ∑ ∫ √ ≠ ≤ ≥ ∞",
];

// Seeded random strings over the character classes the pre-tokenizer distinguishes, to reach
// combinations no one thought of writing by hand.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(20240611);
// Each pool lists units (characters, or sequences that belong together); a line strings together
// 1-12 runs of 1-4 units, each run drawn from one pool.
const chars = (t) => Array.from(t);
const pools = [
  chars("abcXYZ"), chars("0123456789"), [" ", " ", "  "], ["\t"], ["\n"], ["\r\n", "\r"], ["'"],
  ["'s", "'T", "'re", "'LL", "'ve", "'M", "'d"], chars(".,!?-_()[]{}<>|/\\\"#$%&*+=@^`~"),
  chars("éÅßøœçñü"), chars("\u0301\u0308\u0327\u0323"), chars("αβγΩ"), chars("абвЖЯ"), chars("مرحبا"),
  chars("שלום"), chars("नमस्ते"), chars("ไทย"), chars("你好世界"), chars("カタカナひらがな"), chars("한국어"),
  ["\u1100\u1161\u11a8"], chars("１２３ＡＢＣ"), chars("²½Ⅻ٣"), chars("\u00a0\u2003\u3000\u202f\u0085"),
  chars("\ufeff\u200b\u200d"), ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️"], ["<|im_start|>", "<|image_pad|>", "<think>"],
  chars("\u0000\u0007\u001f"),
];
const pick = (list) => list[Math.floor(rand() * list.length)];
const randomLines = [];
for (let line = 0; line < 40; ++line) {
  let s = "";
  const runs = 1 + Math.floor(rand() * 12);
  for (let k = 0; k < runs; ++k) {
    const pool = pick(pools);
    const units = 1 + Math.floor(rand() * 4);
    for (let u = 0; u < units; ++u) s += pick(pool);
  }
  randomLines.push(s);
}

const members = execFileSync("tar", ["-tf", shard], { encoding: "utf8" })
  .split("\n")
  .filter((m) => m.endsWith(".txt"))
  .sort();
const captions = members.map((m) => execFileSync("tar", ["-xOf", shard, m], { encoding: "utf8" }));

const lines = [...handwritten, ...randomLines, ...captions].map((s) => JSON.stringify(s));
writeFileSync(out, lines.join("\n") + "\n");
console.log(`wrote ${lines.length} lines (${captions.length} captions) to ${out}`);
