#pragma once
// Learns a BERT-style WordPiece vocabulary from text and returns it as a standard tokenizer.json
// (BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing [CLS] A [SEP] B [SEP]).
//
// The vocabulary: the special tokens, every character seen at least min_frequency times (alone
// and as a "##" continuation), the most frequent word endings ("##ing", "##ed", ...) and
// beginnings of the words that did not make the list, then the most frequent whole words. With
// greedy longest-match WordPiece, frequent words are one token and rare ones split into a known
// beginning and known endings instead of [UNK].
#include <cstdint>
#include <string>
#include <vector>

namespace gsoft {

struct WordPieceTrainerOptions {
  int64_t vocab_size = 8000;
  int64_t min_frequency = 2;
  double subword_share = 0.2;  // share of the non-character budget for word pieces
  bool lowercase = true;
};

// Throws std::invalid_argument if vocab_size cannot hold the special tokens and characters.
std::string train_wordpiece(const std::vector<std::string>& texts, const WordPieceTrainerOptions& options = {});

}  // namespace gsoft
