#pragma once
// A tiny BERT checkpoint directory in Hugging Face layout (config.json, model.safetensors,
// tokenizer.json with a small WordPiece vocabulary), and a sentiment-like task over its words:
// fixtures for the training and command-line tests.
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "support/helpers.h"

namespace gsoft::test {

inline const std::vector<std::string>& tiny_words() {
  static const std::vector<std::string> w{"the", "movie", "film", "plot", "acting", "was", "is", "very", "quite", "a",
                                          "and", "but", "good", "great", "fun", "bad", "awful", "boring", "long", "story"};
  return w;
}

inline std::string tiny_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  int64_t id = 0;
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","}) vocab[s] = id++;
  for (const auto& w : tiny_words()) vocab[w] = id++;
  nlohmann::json added = nlohmann::json::array();
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    added.push_back({{"id", vocab[s]}, {"content", s}, {"special", true}, {"normalized", false}});
  nlohmann::json t = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "BertNormalizer"}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "BertProcessing"}, {"cls", {"[CLS]", vocab["[CLS]"]}}, {"sep", {"[SEP]", vocab["[SEP]"]}}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"}, {"vocab", vocab}}}};
  return t.dump();
}

// Two layers of width 32, four heads, two classes, dropout 0.1.
inline EncoderConfig tiny_encoder_config(int64_t vocab_size = 32) {
  EncoderConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 2;
  c.hidden_dropout_prob = 0.1;
  c.attention_probs_dropout_prob = 0.1;
  return c;
}

// Writes a two-class sequence classifier with random weights for config `c` (model_type bert or
// roberta) and the given tokenizer.json text into `dir`, in Hugging Face layout.
inline void write_tiny_checkpoint(const std::filesystem::path& dir, const EncoderConfig& c, const std::string& tokenizer_json,
                                  uint64_t seed) {
  std::filesystem::create_directories(dir);
  torch::manual_seed(seed);
  SequenceClassifier m(c);
  std::map<std::string, torch::Tensor> t;
  for (const auto& p : m->named_parameters()) t[p.key()] = p.value().detach();
  io::write_safetensors((dir / "model.safetensors").string(), t, {{"format", "pt"}});
  const bool roberta = c.is_roberta();
  const nlohmann::json config = {{"model_type", c.model_type},
                                 {"architectures", {roberta ? "RobertaForSequenceClassification" : "BertForSequenceClassification"}},
                                 {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                                 {"num_hidden_layers", c.num_hidden_layers}, {"num_attention_heads", c.num_attention_heads},
                                 {"intermediate_size", c.intermediate_size}, {"max_position_embeddings", c.max_position_embeddings},
                                 {"type_vocab_size", c.type_vocab_size}, {"pad_token_id", c.pad_token_id},
                                 {"hidden_act", "gelu"}, {"layer_norm_eps", c.layer_norm_eps},
                                 {"hidden_dropout_prob", c.hidden_dropout_prob},
                                 {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}};
  io::write_file_atomic((dir / "config.json").string(), config.dump(2));
  io::write_file_atomic((dir / "tokenizer.json").string(), tokenizer_json);
}

// Writes the checkpoint into `dir`: random weights, a two-class BertForSequenceClassification.
inline void write_tiny_bert(const std::filesystem::path& dir, uint64_t seed = 11) {
  write_tiny_checkpoint(dir, tiny_encoder_config(), tiny_tokenizer_json(), seed);
}

// CSV "text,label": positive when the sentence holds good/great/fun, negative with bad/awful/boring.
inline void write_sentiment_csv(const std::filesystem::path& path, int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> filler{"the", "movie", "film", "plot", "acting", "was", "is", "very", "quite", "a",
                                        "and", "story", "long"};
  const std::vector<std::string> pos{"good", "great", "fun"}, neg{"bad", "awful", "boring"};
  std::string out = "text,label\n";
  for (int i = 0; i < rows; ++i) {
    const bool positive = i % 2 == 0;
    std::vector<std::string> words;
    const int n = 4 + static_cast<int>(rng() % 6);
    for (int k = 0; k < n; ++k) words.push_back(filler[rng() % filler.size()]);
    words.insert(words.begin() + static_cast<long>(rng() % words.size()), (positive ? pos : neg)[rng() % 3]);
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
    out += "\"" + s + ".\"," + (positive ? "pos" : "neg") + "\n";
  }
  write_text(path, out);
}

// A scratch directory holding a tiny BERT checkpoint (model/) and sentiment train.csv / dev.csv:
// the command-line tests' training run.
struct TinyTrainDir {
  std::filesystem::path dir, model, train, dev;
  TinyTrainDir(const std::string& name, int train_rows, int dev_rows) {
    dir = scratch_dir(name);
    model = dir / "model";
    train = dir / "train.csv";
    dev = dir / "dev.csv";
    write_tiny_bert(model);
    write_sentiment_csv(train, train_rows, 1);
    write_sentiment_csv(dev, dev_rows, 2);
  }
  // "train --model ... --train-file ... --eval-file ... --out OUT"
  std::string train_args(const std::string& out) const {
    return "train --model " + model.string() + " --train-file " + train.string() + " --eval-file " + dev.string() +
           " --out " + out;
  }
};

}  // namespace gsoft::test
