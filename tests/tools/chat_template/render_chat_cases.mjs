// Renders the chat test conversations with the real Qwen3-VL Instruct chat template
// (qwen3vl_instruct.jinja, the `chat_template` shipped with Qwen/Qwen3-VL-*-Instruct) through
// @huggingface/jinja, the JavaScript Jinja engine Hugging Face maintains, and writes what the C++
// renderer must reproduce (tests/test_chat_data.cpp), one JSON object per case:
//   {"name": ..., "rendered": "...", "targets": [[begin, end], ...]}
// rendered: the template's output without a generation prompt. targets: byte ranges (UTF-8) of
// each assistant turn's content and tool calls through its closing <|im_end|>, found by rendering
// message prefixes: the turn of message k starts after render(messages[:k]) plus the header
// "<|im_start|>assistant\n" and ends before the "\n" that closes render(messages[:k+1]).
//
// Usage: (cd tests/tools/chat_template && npm install && node render_chat_cases.mjs)
// Reads ../../data/chat/cases.jsonl, writes ../../data/chat/expected.jsonl.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const here = dirname(fileURLToPath(import.meta.url));
const data = join(here, "../../data/chat");
const template = new Template(readFileSync(join(here, "qwen3vl_instruct.jinja"), "utf8"));
const bytes = (s) => Buffer.byteLength(s, "utf8");
const render = (c, messages) =>
  template.render({ messages, tools: c.tools, add_generation_prompt: false });

const header = "<|im_start|>assistant\n";
const out = [];
for (const line of readFileSync(join(data, "cases.jsonl"), "utf8").split("\n")) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  const rendered = render(c, c.messages);
  const targets = [];
  c.messages.forEach((m, k) => {
    if (m.role !== "assistant") return;
    const before = render(c, c.messages.slice(0, k));
    const through = render(c, c.messages.slice(0, k + 1));
    if (!rendered.startsWith(through) || !through.slice(before.length).startsWith(header))
      throw new Error(`${c.name}: message ${k} does not render as a prefix`);
    targets.push([bytes(before) + bytes(header), bytes(through) - 1]);
  });
  out.push(JSON.stringify({ name: c.name, rendered, targets }));
}
writeFileSync(join(data, "expected.jsonl"), out.join("\n") + "\n");
console.log(`wrote ${out.length} cases to ${join(data, "expected.jsonl")}`);
