// Tokenizers against the ids of Hugging Face's own JavaScript port (tests/data/tokenizers,
// made by make_reference.js from real vocabularies), plus truncation and error handling.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "gsoft/text/tokenizer.h"

namespace {

std::string data(const std::string& name) { return std::string(GSOFT_TEST_DATA) + "/tokenizers/" + name; }

const gsoft::Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, gsoft::Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, gsoft::Tokenizer::from_file(data(name + ".tokenizer.json"))).first;
  return it->second;
}

nlohmann::json reference() {
  std::ifstream in(data("reference_ids.json"));
  return nlohmann::json::parse(in);
}

class ReferenceIds : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceIds, EqualHuggingFace) {
  const auto& tok = tokenizer(GetParam());
  const auto cases = reference()[GetParam()];
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    std::optional<std::string> pair;
    if (c.contains("text_pair")) pair = c["text_pair"].get<std::string>();
    const auto e = tok.encode(c["text"].get<std::string>(), pair);
    EXPECT_EQ(e.ids, c["ids"].get<std::vector<int64_t>>()) << "text: " << c["text"] << (pair ? " / " + *pair : "");
    EXPECT_EQ(e.type_ids, c["type_ids"].get<std::vector<int64_t>>()) << "text: " << c["text"];
    ASSERT_EQ(e.tokens.size(), e.ids.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ReferenceIds, ::testing::Values("bert-base-uncased", "gpt2", "roberta-style"));

TEST(Tokenizer, KnownIdsAndVocabulary) {
  const auto& bert = tokenizer("bert-base-uncased");
  EXPECT_EQ(bert.model_type(), "WordPiece");
  EXPECT_EQ(bert.vocab_size(), 30522);
  EXPECT_EQ(bert.pad_id(), 0);
  EXPECT_EQ(bert.token_to_id("[MASK]"), 103);
  EXPECT_EQ(bert.id_to_token(7592), "hello");
  EXPECT_THROW(bert.id_to_token(30522), std::out_of_range);
  EXPECT_EQ(bert.num_special_tokens(false), 2);
  EXPECT_EQ(bert.num_special_tokens(true), 3);
  // Greedy longest prefix: "una" is in the vocabulary, so "##ffa" follows, not "un" + "##aff".
  const auto e = bert.encode("Unaffable playing");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"[CLS]", "una", "##ffa", "##ble", "playing", "[SEP]"}));

  const auto& gpt2 = tokenizer("gpt2");
  EXPECT_EQ(gpt2.model_type(), "BPE");
  EXPECT_EQ(gpt2.encode("Hello World").ids, (std::vector<int64_t>{15496, 2159}));
  EXPECT_EQ(gpt2.num_special_tokens(true), 0);
  const auto& roberta = tokenizer("roberta-style");
  EXPECT_EQ(roberta.pad_id(), *roberta.token_to_id("<pad>"));
  EXPECT_EQ(roberta.num_special_tokens(true), 4);
}

// Rust's ByteLevel post-processor appends the pair with type id 1 (the JS port drops it, so the
// reference file has no GPT-2 pairs).
TEST(Tokenizer, ByteLevelPairsConcatenate) {
  const auto& gpt2 = tokenizer("gpt2");
  const auto a = gpt2.encode("Hello"), b = gpt2.encode(" World");
  const auto p = gpt2.encode("Hello", std::string(" World"));
  std::vector<int64_t> ids = a.ids;
  ids.insert(ids.end(), b.ids.begin(), b.ids.end());
  EXPECT_EQ(p.ids, ids);
  EXPECT_EQ(p.type_ids, (std::vector<int64_t>{0, 1}));
}

TEST(Tokenizer, LongestFirstTruncation) {
  const auto& bert = tokenizer("bert-base-uncased");
  const std::string a = "one two three four five six seven eight nine ten";  // 10 tokens
  const std::string b = "alpha beta gamma";                                      // 3 tokens
  const auto full = bert.encode(a, b);
  ASSERT_EQ(full.size(), 16u);
  auto count = [](const gsoft::Encoding& e, int64_t type) {
    return std::count(e.type_ids.begin(), e.type_ids.end(), type);
  };
  // The longer sequence loses tokens first: 10 + 3 into 9 keeps 6 + 3.
  auto t = bert.encode(a, b, 12);
  ASSERT_EQ(t.size(), 12u);
  EXPECT_EQ(count(t, 0), 2 + 6);
  EXPECT_EQ(count(t, 1), 3 + 1);
  EXPECT_EQ(std::vector<int64_t>(t.ids.begin(), t.ids.begin() + 7), std::vector<int64_t>(full.ids.begin(), full.ids.begin() + 7));
  // Once equal, both shrink; an odd budget gives the extra token to the longer one.
  t = bert.encode(a, b, 8);  // budget 5: a 3, b 2
  EXPECT_EQ(count(t, 0), 2 + 3);
  EXPECT_EQ(count(t, 1), 2 + 1);
  t = bert.encode(b, a, 8);  // the longer is second: b 2, a 3
  EXPECT_EQ(count(t, 0), 2 + 2);
  EXPECT_EQ(count(t, 1), 3 + 1);
  // Single sequences keep their special tokens.
  t = bert.encode(a, std::nullopt, 5);
  EXPECT_EQ(t.tokens, (std::vector<std::string>{"[CLS]", "one", "two", "three", "[SEP]"}));
  EXPECT_EQ(bert.encode(a, std::nullopt, 64).size(), 12u);
  try {
    bert.encode(a, b, 2);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max_length 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 special tokens"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, InvalidUtf8IsReplacementNotCrash) {
  const std::string bad = std::string("caf\xC3", 4) + " \xFF\xFE ok \xE2\x82";
  const auto& bert = tokenizer("bert-base-uncased");
  // clean_text removes U+FFFD, leaving "caf ok".
  EXPECT_EQ(bert.encode(bad).ids, bert.encode("caf  ok").ids);
  const auto g = tokenizer("gpt2").encode(bad);
  EXPECT_GT(g.size(), 3u);
}

TEST(Tokenizer, ErrorsNameTheProblem) {
  auto expect_error = [](const std::string& json, const std::string& needle) {
    try {
      gsoft::Tokenizer::from_json(json, "t.json");
      ADD_FAILURE() << "expected an error for " << json;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
    }
  };
  expect_error("{", "not valid JSON");
  expect_error("{}", "no \"model\"");
  expect_error(R"({"model":{"type":"Unigram","vocab":{}}})", "unsupported model \"Unigram\"");
  expect_error(R"({"model":{"type":"WordPiece","vocab":{"a":0}}})", "unk_token \"[UNK]\"");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}})", "token \"ab\" is not in the vocabulary");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a"]}})", "expected two tokens");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":"x"},"merges":[]}})", "not an integer id");
  expect_error(R"({"normalizer":{"type":"Precompiled"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
               "unsupported normalizer \"Precompiled\"");
  expect_error(R"({"post_processor":{"type":"BertProcessing","cls":["[CLS]"]},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})",
               "post_processor.cls");
  EXPECT_THROW(gsoft::Tokenizer::from_file("/nonexistent/tokenizer.json"), std::runtime_error);
}

// A tiny BPE whose merges are spelled both ways gives the same ids; an unknown character maps to
// unk_token; merge ties go to the leftmost pair.
TEST(Tokenizer, SmallBpeBothMergeSpellings) {
  const std::string vocab = R"({"<unk>":0,"a":1,"b":2,"aa":3,"ab":4,"aaa":5})";
  for (const std::string merges : {R"(["a a","a b","aa a"])", R"([["a","a"],["a","b"],["aa","a"]])"}) {
    const auto t = gsoft::Tokenizer::from_json(
        R"({"pre_tokenizer":{"type":"WhitespaceSplit"},"model":{"type":"BPE","unk_token":"<unk>","vocab":)" + vocab +
        R"(,"merges":)" + merges + "}}");
    EXPECT_EQ(t.encode("aaaa").ids, (std::vector<int64_t>{3, 3}));      // (aa)(aa), not (aaa)(a)
    EXPECT_EQ(t.encode("aaab").ids, (std::vector<int64_t>{3, 4}));      // leftmost a-a first
    EXPECT_EQ(t.encode("aca cb").ids, (std::vector<int64_t>{1, 0, 1, 0, 2}));
  }
}

}  // namespace
