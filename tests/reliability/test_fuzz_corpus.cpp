// Replays the fuzzing corpora through the same reader table the libFuzzer targets use
// (fuzz/readers.cpp): every seed in fuzz/corpus/<reader>/ is a valid file and must load; every
// input in fuzz/regressions/<reader>/ once crashed or misbehaved and must now be refused with a
// std::exception (under scripts/sanitize.sh, also without a sanitizer report).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "../fuzz/readers.h"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

const fs::path kFuzzDir = fs::path(GSOFT_SOURCE_DIR) / "fuzz";

class FuzzCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzCorpus, EverySeedLoads) {
  const auto& reader = gsoft::fuzz::find_reader(GetParam());
  const auto seeds = files_in(kFuzzDir / "corpus" / GetParam());
  ASSERT_GE(seeds.size(), 2u) << "fuzz/corpus/" << GetParam() << " needs seeds";
  for (const auto& p : seeds) {
    const auto bytes = bytes_of(p);
    const auto r = gsoft::fuzz::feed(reader, bytes.data(), bytes.size());
    EXPECT_TRUE(r.accepted) << p << ": " << r.error;
  }
}

TEST_P(FuzzCorpus, EveryRegressionIsRefusedWithAMessage) {
  const auto& reader = gsoft::fuzz::find_reader(GetParam());
  for (const auto& p : files_in(kFuzzDir / "regressions" / GetParam())) {
    const auto bytes = bytes_of(p);
    const auto r = gsoft::fuzz::feed(reader, bytes.data(), bytes.size());
    EXPECT_FALSE(r.accepted) << p;
    EXPECT_FALSE(r.error.empty()) << p;
  }
}

std::vector<std::string> reader_names() {
  std::vector<std::string> names;
  for (const auto& r : gsoft::fuzz::readers()) names.push_back(r.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Readers, FuzzCorpus, ::testing::ValuesIn(reader_names()),
                         [](const auto& info) { return info.param; });

TEST(FuzzCorpus, EveryReaderHasACorpusFolder) {
  for (const auto& r : gsoft::fuzz::readers())
    EXPECT_TRUE(fs::is_directory(kFuzzDir / "corpus" / r.name)) << r.name;
  EXPECT_NE(gsoft::fuzz::feed(gsoft::fuzz::find_reader("safetensors"), nullptr, 0).error, "");
  EXPECT_THROW(gsoft::fuzz::find_reader("nope"), std::invalid_argument);
}

}  // namespace
