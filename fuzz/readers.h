#pragma once
// Every gsoft reader of outside files, driven from raw bytes: one entry per libFuzzer target
// (fuzz/fuzz_target.cpp) and the table the regression test replays (tests/io/test_fuzz_corpus.cpp).
//
// Readers that take a path get the bytes written to a scratch file first. Where a reader has
// options or reads two files, the input starts with an option byte (and a 4-byte length); the
// comment on each entry in readers.cpp gives the layout, and fuzz/make_corpus.py writes seeds in it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gsoft::fuzz {

struct Reader {
  const char* name;  // also the folder under fuzz/corpus/ and fuzz/regressions/
  const char* what;  // the reader(s) it drives
  void (*run)(const uint8_t* data, size_t size);
};

const std::vector<Reader>& readers();
// Throws std::invalid_argument listing the names for an unknown one.
const Reader& find_reader(const std::string& name);

struct Outcome {
  bool accepted = false;  // the reader returned normally
  std::string error;      // what() of the std::exception it threw, otherwise
};
// Runs the reader. A std::exception is the expected answer to bad input and is returned; anything
// else (a crash, a sanitizer report, a foreign exception) is not caught.
Outcome feed(const Reader& reader, const uint8_t* data, size_t size);

}  // namespace gsoft::fuzz
