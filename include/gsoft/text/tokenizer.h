#pragma once
// Tokenizers read from a Hugging Face tokenizer.json: WordPiece (BERT) and byte-level BPE
// (GPT-2, RoBERTa), with their normalizers, pre-tokenizers, post-processors and added tokens.
// Ids equal those of Hugging Face's tokenizers (tests compare with its JavaScript port).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gsoft {

struct Encoding {
  std::vector<int64_t> ids;
  std::vector<int64_t> type_ids;      // 0 for the first sequence, 1 for the second (as the post-processor says)
  std::vector<std::string> tokens;    // the vocabulary strings of `ids`
  size_t size() const { return ids.size(); }
};

// Limits on what a tokenizer.json may declare: ids (they index a table), the bytes of one token,
// and WordPiece's max_input_chars_per_word (longer words become the unknown token).
constexpr int64_t kMaxVocabSize = int64_t{1} << 21;
constexpr size_t kMaxTokenBytes = 1024;
constexpr int64_t kMaxWordChars = 1000;

class Tokenizer {
 public:
  // Throws std::runtime_error naming the file and the field for anything it cannot read, and
  // listing the supported types for an unsupported normalizer, pre-tokenizer, model or
  // post-processor.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(const std::string& json_text, const std::string& origin = "tokenizer.json");

  // Encodes `text` (and `text_pair`), adding the post-processor's special tokens when
  // add_special_tokens. max_length > 0 truncates like Hugging Face's "longest_first" so that the
  // result, special tokens included, has at most max_length ids. Invalid UTF-8 reads as U+FFFD.
  Encoding encode(const std::string& text, const std::optional<std::string>& text_pair = std::nullopt,
                  int64_t max_length = 0, bool add_special_tokens = true) const;

  // The words the model sees: added tokens split off, normalised, pre-tokenized (UTF-8). Used to
  // count words when training a vocabulary.
  std::vector<std::string> pre_tokenize(const std::string& text) const;

  // The special tokens the post-processor adds to one sequence or to a pair.
  int64_t num_special_tokens(bool pair) const;

  std::optional<int64_t> token_to_id(const std::string& token) const;
  // Throws for an id outside [0, vocab_size()).
  const std::string& id_to_token(int64_t id) const;
  int64_t vocab_size() const;  // largest id + 1, added tokens included
  // The padding id: tokenizer.json's "padding.pad_id", else [PAD] or <pad>, else 0.
  int64_t pad_id() const;
  std::string model_type() const;  // "WordPiece" or "BPE"
  const std::string& origin() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace gsoft
