// Sentence pairs in JSON lines (issue 19): predict reads "text_pair" wherever a line has one, on
// real BERT and RoBERTa vocabularies, and train, eval and predict read one file the same way.
// Expected ids come from Hugging Face's own tokenizer (tests/data/tokenizers/reference_ids.json)
// for each text alone; the test assembles pairs and truncates them itself.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "gsoft/models/classifier.h"
#include "gsoft/train/batching.h"
#include "support/cli_output.h"
#include "support/helpers.h"
#include "support/tiny_model.h"

#ifdef GSOFT_CLI_PATH
namespace {

namespace fs = std::filesystem;
using gsoft::test::read_text;
using gsoft::test::run_command;
using gsoft::test::write_text;

using gsoft::test::last_json_line;
using gsoft::test::read_jsonl;

// Hugging Face's ids of each single text without the special tokens around it, and those two.
struct Reference {
  std::map<std::string, std::vector<int64_t>> content;
  int64_t cls = -1, sep = -1;
};

Reference reference_ids(const std::string& tokenizer) {
  const auto all = nlohmann::json::parse(read_text(gsoft::test::data_path("tokenizers/reference_ids.json")));
  Reference r;
  for (const auto& e : all.at(tokenizer)) {
    if (e.contains("text_pair")) continue;
    const auto ids = e.at("ids").get<std::vector<int64_t>>();
    r.cls = ids.front();
    r.sep = ids.back();
    r.content[e.at("text").get<std::string>()] = std::vector<int64_t>(ids.begin() + 1, ids.end() - 1);
  }
  return r;
}

// Longest-first truncation, one token at a time: trim the longer text; on a tie trim the text
// that was shorter at the start (the first when they started equal), so the longer keeps the odd
// token, as Hugging Face's Rust tokenizers do.
void truncate_pair(std::vector<int64_t>& a, std::vector<int64_t>& b, size_t budget) {
  const bool a_was_shorter = a.size() <= b.size();
  while (a.size() + b.size() > budget) {
    if (a.size() > b.size() || (a.size() == b.size() && a_was_shorter)) a.pop_back();
    else b.pop_back();
  }
}

struct Tiny {
  bool roberta;
  std::string tokenizer;  // file stem under tests/data/tokenizers
};

gsoft::EncodedExample expected_encoding(const Tiny& m, const Reference& ref, std::vector<int64_t> a,
                                        std::optional<std::vector<int64_t>> b, size_t max_len) {
  // BERT: [CLS] a [SEP] b [SEP]; RoBERTa: <s> a </s></s> b </s>. Type id 0 up to the first separator,
  // 1 after it (RoBERTa models have one type and ignore them).
  const int64_t cls = ref.cls, sep = ref.sep;
  gsoft::EncodedExample e;
  if (!b) {
    if (a.size() > max_len - 2) a.resize(max_len - 2);
    e.ids.push_back(cls);
    e.ids.insert(e.ids.end(), a.begin(), a.end());
    e.ids.push_back(sep);
    e.type_ids.assign(e.ids.size(), 0);
    return e;
  }
  truncate_pair(a, *b, max_len - (m.roberta ? 4 : 3));
  e.ids.push_back(cls);
  e.ids.insert(e.ids.end(), a.begin(), a.end());
  e.ids.push_back(sep);
  e.type_ids.assign(e.ids.size(), 0);
  if (m.roberta) e.ids.push_back(sep);
  e.ids.insert(e.ids.end(), b->begin(), b->end());
  e.ids.push_back(sep);
  e.type_ids.resize(e.ids.size(), 1);
  return e;
}

void write_tiny(const fs::path& dir, const Tiny& m) {
  const std::string tok = read_text(gsoft::test::data_path("tokenizers/" + m.tokenizer + ".tokenizer.json"));
  gsoft::EncoderConfig c = gsoft::test::tiny_encoder_config(gsoft::Tokenizer::from_json(tok).vocab_size());
  c.model_type = m.roberta ? "roberta" : "bert";
  c.type_vocab_size = m.roberta ? 1 : 2;
  c.pad_token_id = m.roberta ? 1 : 0;
  c.layer_norm_eps = m.roberta ? 1e-5 : 1e-12;
  gsoft::test::write_tiny_checkpoint(dir, c, tok, 23);
}

const char* kAccents = "Héllo, naïve café! Ångström résumé Über";
const char* kCjk = "中文字符测试 and 日本語のテキスト";
const char* kEmoji = "Emoji: 😀🎉👍🏽 ok";
const char* kHangul = "한국어 문장입니다";
const char* kFox = "The quick brown fox jumps over the lazy dog.";
const char* kEcole = "e\xCC\x81" "cole de\xCC\x81" "compose\xCC\x81" "e";  // décomposé, NFD as in the reference

// (text, pair or "" for a single text)
const std::vector<std::pair<std::string, std::string>>& mixed_lines() {
  static const std::vector<std::pair<std::string, std::string>> lines{
      {kAccents, ""}, {kCjk, kEmoji}, {kEmoji, ""}, {kFox, kEcole}, {kHangul, kAccents}, {kCjk, ""}, {kEcole, kHangul}};
  return lines;
}

std::string jsonl_of(const std::vector<std::pair<std::string, std::string>>& lines, bool labels) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    nlohmann::json j = {{"text", lines[i].first}};
    if (!lines[i].second.empty()) j["text_pair"] = lines[i].second;
    if (labels) j["label"] = i % 2 ? "yes" : "no";
    out += j.dump() + "\n";
  }
  return out;
}

class PairsInJsonl : public ::testing::TestWithParam<Tiny> {};

TEST_P(PairsInJsonl, PredictReadsEachLineAsWrittenWithTruncation) {
  const Tiny m = GetParam();
  const fs::path dir = gsoft::test::scratch_dir(std::string("pairs_") + (m.roberta ? "roberta" : "bert"));
  write_tiny(dir / "model", m);
  const fs::path input = dir / "mixed.jsonl", out = dir / "p.jsonl", log = dir / "log.txt";
  write_text(input, jsonl_of(mixed_lines(), false));
  const size_t max_len = 12;
  ASSERT_EQ(run_command(std::string(GSOFT_CLI_PATH) + " --threads 2 predict --model " + (dir / "model").string() +
                            " --input " + input.string() + " --out " + out.string() + " --max-len " + std::to_string(max_len),
                        log), 0) << read_text(log);
  const auto lines = read_jsonl(out);
  ASSERT_EQ(lines.size(), mixed_lines().size());

  const Reference ref = reference_ids(m.tokenizer);
  auto clf = gsoft::load_classifier((dir / "model").string());
  // The file as predict reads it, encoded: must be the independently assembled ids.
  gsoft::data::TableFormat fmt;
  fmt.labelled = false;
  fmt.pairs = gsoft::data::Pairs::AsWritten;
  const auto encoded = gsoft::encode_dataset(*clf.tokenizer, gsoft::data::read_table(input.string(), fmt), max_len);
  ASSERT_EQ(encoded.size(), lines.size());
  bool truncated_pair = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& [text, pair] = mixed_lines()[i];
    std::optional<std::vector<int64_t>> b;
    if (!pair.empty()) b = ref.content.at(pair);
    const gsoft::EncodedExample want = expected_encoding(m, ref, ref.content.at(text), b, max_len);
    if (b && ref.content.at(text).size() + b->size() + (m.roberta ? 4 : 3) > max_len) truncated_pair = true;
    EXPECT_EQ(encoded[i].ids, want.ids) << "line " << i + 1;
    EXPECT_EQ(encoded[i].type_ids, want.type_ids) << "line " << i + 1;
    // predict's logits are the model's on those ids.
    const torch::Tensor logits = gsoft::predict_logits(*clf.model, {want}, 1, clf.batch_options());
    for (int64_t k = 0; k < 2; ++k)
      EXPECT_NEAR(lines[i]["logits"][k].get<double>(), logits[0][k].item<double>(), 1e-5) << "line " << i + 1;
  }
  EXPECT_TRUE(truncated_pair);  // the file exercises longest-first truncation
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, PairsInJsonl,
                         ::testing::Values(Tiny{false, "bert-base-uncased"}, Tiny{true, "roberta-style"}),
                         [](const auto& info) { return std::string(info.param.roberta ? "roberta" : "bert"); });

// train (its evaluation), eval and predict see one labelled file of pairs identically: the same
// example count, and the same loss from each. A mixed file is predict's only.
TEST(PairsInJsonlCommands, TrainEvalAndPredictReadTheSameFileTheSameWay) {
  const Tiny m{false, "bert-base-uncased"};
  const fs::path dir = gsoft::test::scratch_dir("pairs_three_commands");
  write_tiny(dir / "model", m);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& l : mixed_lines())
    if (!l.second.empty()) pairs.push_back(l);
  pairs.push_back({kFox, kCjk});
  const fs::path file = dir / "pairs.jsonl", log = dir / "log.txt";
  write_text(file, jsonl_of(pairs, true));
  const std::string cli = std::string(GSOFT_CLI_PATH) + " --threads 2 ";
  const std::string model = " --model " + (dir / "model").string();
  auto run = [&](const std::string& args) { return run_command(cli + args, log); };

  // One step at a negligible learning rate: the evaluation after it is the model's on the file.
  ASSERT_EQ(run("train" + model + " --train-file " + file.string() + " --eval-file " + file.string() + " --out " +
                (dir / "run").string() + " --method gsoft --block-size 8 --max-steps 1 --lr 1e-12 --batch-size 2 "
                "--eval-every 1 --max-len 12 --no-resume"), 0) << read_text(log);
  const nlohmann::json summary = last_json_line(read_text(log));
  const double train_loss = summary["best"]["loss"].get<double>();
  const std::string adapter = " --adapter " + (dir / "run" / "best").string();

  ASSERT_EQ(run("eval" + model + adapter + " --eval-file " + file.string() + " --max-len 12"), 0) << read_text(log);
  const nlohmann::json ev = last_json_line(read_text(log));
  EXPECT_EQ(ev["examples"].get<size_t>(), pairs.size());
  EXPECT_NEAR(ev["loss"].get<double>(), train_loss, 1e-6);

  ASSERT_EQ(run("predict" + model + adapter + " --input " + file.string() + " --out " + (dir / "p.jsonl").string() +
                " --max-len 12"), 0) << read_text(log);
  const auto lines = read_jsonl(dir / "p.jsonl");
  ASSERT_EQ(lines.size(), pairs.size());
  double ce = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const double l0 = lines[i]["logits"][0].get<double>(), l1 = lines[i]["logits"][1].get<double>();
    const double target = i % 2 ? l1 : l0;  // the adapter's classes are the file's sorted: no, yes
    ce += std::log(std::exp(l0) + std::exp(l1)) - target;
  }
  EXPECT_NEAR(ce / static_cast<double>(lines.size()), ev["loss"].get<double>(), 1e-5);

  // eval of the base checkpoint, whose classes are unnamed: --labels names them (it was ignored).
  EXPECT_EQ(run("eval" + model + " --eval-file " + file.string()), 1);
  EXPECT_NE(read_text(log).find("label 'no' is not one of the classes (LABEL_0, LABEL_1)"), std::string::npos)
      << read_text(log);
  ASSERT_EQ(run("eval" + model + " --eval-file " + file.string() + " --labels no,yes"), 0) << read_text(log);
  EXPECT_EQ(last_json_line(read_text(log))["examples"].get<size_t>(), pairs.size());
  EXPECT_EQ(run("eval" + model + " --eval-file " + file.string() + " --labels no,yes,maybe"), 1);
  EXPECT_NE(read_text(log).find("classifier"), std::string::npos) << read_text(log);  // names the head tensor

  // A file mixing single texts and pairs: predict takes it, train and eval name the single lines.
  const fs::path mixed = dir / "mixed.jsonl";
  write_text(mixed, jsonl_of(mixed_lines(), true));
  ASSERT_EQ(run("predict" + model + " --input " + mixed.string() + " --out " + (dir / "m.jsonl").string()), 0)
      << read_text(log);
  EXPECT_EQ(read_jsonl(dir / "m.jsonl").size(), mixed_lines().size());
  EXPECT_EQ(run("eval" + model + adapter + " --eval-file " + mixed.string()), 1);
  EXPECT_NE(read_text(log).find("mixed.jsonl:1: no string field 'text_pair'"), std::string::npos) << read_text(log);
  EXPECT_EQ(run("train" + model + " --train-file " + mixed.string() + " --out " + (dir / "run2").string()), 1);
  EXPECT_NE(read_text(log).find("3 bad row(s); first: "), std::string::npos) << read_text(log);
  EXPECT_NE(read_text(log).find("mixed.jsonl:6: no string field 'text_pair' (other lines are pairs"), std::string::npos)
      << read_text(log);
  // A model trained on pairs is evaluated on pairs: a file of single texts is refused by train.
  const fs::path singles = dir / "singles.jsonl";
  write_text(singles, "{\"text\":\"a\",\"label\":\"no\"}\n");
  EXPECT_EQ(run("train" + model + " --train-file " + file.string() + " --eval-file " + singles.string() + " --out " +
                (dir / "run3").string()), 1);
  EXPECT_NE(read_text(log).find("singles.jsonl:1: no string field 'text_pair' (the task is one of text pairs)"),
            std::string::npos) << read_text(log);
}

}  // namespace
#endif
