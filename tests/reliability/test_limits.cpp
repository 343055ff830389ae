// The limits that keep hostile files from crashing gsoft or making it allocate what a header
// merely announces (docs/reliability.md lists them). One test per reader; each case names the
// limit and checks the error names the file and the numbers involved.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "gsoft/data/corpus.h"
#include "gsoft/data/images.h"
#include "gsoft/data/tasks.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/tokenizer.h"
#include "gsoft/text/word_vectors.h"
#include "support/helpers.h"

namespace {

using namespace gsoft;
namespace fs = std::filesystem;
using test::error_of;

std::string read_st(const fs::path& p) {
  return error_of([&] { io::read_safetensors(p.string()); });
}

TEST(Limits, SafetensorsShapesAreCheckedAgainstTheFileBeforeAllocating) {
  const auto d = test::scratch_dir("limits_st");
  // 2^61 F64 elements: 2^64 bytes, which wraps to 0 and matched empty offsets before the check.
  test::write_raw_safetensors(d / "wrap.st", R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", "");
  EXPECT_HAS(read_st(d / "wrap.st"), "more than the 0-byte data buffer holds");
  // 2^30 F32 elements (4 GiB) announced in a 16-byte file: refused before torch allocates.
  test::write_raw_safetensors(d / "big.st", R"({"a":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,16]}})",
                              std::string(16, '\0'));
  EXPECT_HAS(read_st(d / "big.st"), "F32 [1073741824] needs 1073741824 elements of 4 bytes, more than the 16-byte data buffer");
  // A zero dimension does not excuse the others from the overflow check.
  test::write_raw_safetensors(d / "zero.st", R"({"a":{"dtype":"U8","shape":[0,9223372036854775807,4],"data_offsets":[0,0]}})", "");
  EXPECT_HAS(read_st(d / "zero.st"), "overflows");
  // Element counts whose product overflows 64 bits.
  test::write_raw_safetensors(d / "prod.st", R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "");
  EXPECT_HAS(read_st(d / "prod.st"), "overflows (element count over 2^62)");
  // Rank.
  std::string dims = "[1";
  for (size_t i = 1; i <= io::kMaxSafetensorsRank; ++i) dims += ",1";
  test::write_raw_safetensors(d / "rank.st", R"({"a":{"dtype":"U8","shape":)" + dims + R"(],"data_offsets":[0,1]}})", "x");
  EXPECT_HAS(read_st(d / "rank.st"), "65 dimensions, expected at most 64");
  fs::remove_all(d);
}

TEST(Limits, JsonSizeAndDepthAreCappedInEveryJsonReader) {
  const std::string deep = "{\"a\":" + std::string(100000, '[');
  EXPECT_HAS(error_of([&] { io::adapter_config_from_json(deep); }), "adapter_config.json: JSON nests deeper than 64 levels");
  EXPECT_HAS(error_of([&] { EncoderConfig::from_json(deep); }), "config.json: JSON nests deeper than 64 levels");
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(deep); }), "tokenizer.json: JSON nests deeper than 64 levels");
  const std::string huge(100ull * 1024 * 1024 + 1, ' ');
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(huge); }), "JSON of 104857601 bytes exceeds the 104857600-byte limit");
  // The streaming word-vector JSON reader skips unknown values recursively: capped too.
  const auto d = test::scratch_dir("limits_json");
  test::write_text(d / "deep.json", "{\"skipped\":" + std::string(1000000, '[') + "}");
  EXPECT_HAS(error_of([&] { read_word_vectors((d / "deep.json").string()); }), "JSON nests deeper than 64 levels");
  fs::remove_all(d);
}

TEST(Limits, TokenizerIdsTokenLengthsAndWordLengths) {
  auto wordpiece = [](const std::string& vocab, int64_t max_chars = 100) {
    return R"({"model":{"type":"WordPiece","unk_token":"[UNK]","max_input_chars_per_word":)" + std::to_string(max_chars) +
           R"(,"vocab":{"[UNK]":0,)" + vocab + "}}}";
  };
  // An id indexes the id -> token table: 2^31 once allocated 64 GB.
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(wordpiece(R"("a":2147483648)")); }),
             "token \"a\" has id 2147483648, expected 0..2097151");
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(R"({"model":{"vocab":{"[UNK]":0}},"added_tokens":[{"content":"x","id":99999999}]})"); }),
             "has id 99999999");
  const std::string long_token(kMaxTokenBytes + 1, 't');
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(wordpiece("\"" + long_token + "\":1")); }),
             "is 1025 bytes, expected at most 1024");
  EXPECT_HAS(error_of([&] { Tokenizer::from_json(wordpiece(R"("a":1)", 1000000)); }),
             "max_input_chars_per_word is 1000000, expected 1..1000");
  // A word at the cap is tokenized in time linear in its length (pieces are bounded by the
  // longest vocabulary entry), and a longer one is the unknown token.
  const auto tok = Tokenizer::from_json(wordpiece(R"("a":1,"##a":2)", 1000));
  const auto at_cap = tok.encode(std::string(1000, 'a'), std::nullopt, 0, false);
  ASSERT_EQ(at_cap.ids.size(), 1000u);
  EXPECT_EQ(at_cap.ids[0], 1);
  EXPECT_EQ(at_cap.ids[999], 2);
  EXPECT_EQ(tok.encode(std::string(1001, 'a'), std::nullopt, 0, false).ids, std::vector<int64_t>{0});
}

TEST(Limits, LineLengthsAreCappedInTextReaders) {
  const auto d = test::scratch_dir("limits_lines");
  const std::string long_line(17u << 20, 'x');  // over the 16 MiB cap
  test::write_text(d / "vectors.txt", "a 1 2\n" + long_line + "\n");
  EXPECT_HAS(error_of([&] { read_word_vectors((d / "vectors.txt").string()); }), "vectors.txt:2: line longer than 16777216 bytes");
  test::write_text(d / "corpus.txt", "fine\n\n" + long_line);
  EXPECT_HAS(error_of([&] { data::read_corpus((d / "corpus.txt").string()); }), "corpus.txt:3: line longer than 16777216 bytes");
  test::write_text(d / "table.csv", "text,label\n" + long_line + ",1\n");
  EXPECT_HAS(error_of([&] { data::read_table((d / "table.csv").string(), {}); }), "longer than 16777216");
  fs::remove_all(d);
}

TEST(Limits, WordVectorNumbersAndDimensions) {
  const auto d = test::scratch_dir("limits_vectors");
  // Casting NaN or 1e30 to an integer is undefined behaviour: refused as floats.
  for (const char* dim : {"1e30", "-5", "2.5", "5000"}) {
    test::write_text(d / "dim.json", std::string("{\"dimensions\":") + dim + ",\"vectors\":{}}");
    EXPECT_HAS(error_of([&] { read_word_vectors((d / "dim.json").string()); }), "expected a whole number in 1..4096");
  }
  test::write_text(d / "inf.txt", "a 1 inf\n");
  EXPECT_HAS(error_of([&] { read_word_vectors((d / "inf.txt").string()); }), "expected a finite number");
  fs::remove_all(d);
}

TEST(Limits, ImageHeadersAreCheckedAgainstTheFileBeforeAllocating) {
  const auto d = test::scratch_dir("limits_idx");
  auto idx = [](const std::vector<uint32_t>& dims, size_t payload) {
    return test::idx_bytes(dims, std::vector<uint8_t>(payload));
  };
  test::write_text(d / "labels", idx({1000000}, 1000000));
  // 10^6 images of 4096x4096 (16 TB) announced in a file of 100 pixels.
  test::write_text(d / "images", idx({1000000, 4096, 4096}, 100));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "images").string(), (d / "labels").string()); }),
             "over the 8589934592-byte limit");
  test::write_text(d / "images", idx({1000000, 28, 28}, 100));
  EXPECT_HAS(error_of([&] { data::read_idx((d / "images").string(), (d / "labels").string()); }),
             "truncated: the header announces 1000000 images of 28x28 (784000000 bytes), but the file holds at most 100");
  fs::remove_all(d);
}

TEST(Limits, EncoderConfigSizesAreBounded) {
  EXPECT_HAS(error_of([] { EncoderConfig::from_json(R"({"vocab_size":1000000000000})"); }),
             "config.json: vocab_size is 1000000000000, expected 1..2097152");
  EXPECT_HAS(error_of([] { EncoderConfig::from_json(R"({"hidden_size":65536,"num_attention_heads":1,"num_hidden_layers":100})"); }),
             "more than the limit of 4294967296");
  EXPECT_HAS(error_of([] { EncoderConfig::from_json(R"({"vocab_size":10,"pad_token_id":10})"); }),
             "pad_token_id 10 is outside the vocabulary 0..9");
  EXPECT_HAS(error_of([] { EncoderConfig::from_json(R"({"hidden_dropout_prob":1.5})"); }), "hidden_dropout_prob is 1.5");
}

TEST(Limits, HugeIntegerLabelsSortWithoutThrowing) {
  const auto d = test::scratch_dir("limits_labels");
  test::write_text(d / "t.csv", "text,label\na,123456789012345678901234567890\nb,-5\nc,7\n");
  const auto ds = data::read_table((d / "t.csv").string(), {});
  EXPECT_EQ(ds.label_names, (std::vector<std::string>{"-5", "7", "123456789012345678901234567890"}));
  fs::remove_all(d);
}

// Found by fuzz_adapter_config: nlohmann casts 1e59 to int64_t, which is undefined behaviour.
TEST(Limits, IntegerFieldsRejectFloatsAndOutOfRangeValues) {
  EXPECT_HAS(error_of([] { io::adapter_config_from_json(R"({"peft_type":"GSOFT","target_modules":["q"],"block_size":1.1e59})"); }),
             "field 'block_size' has the wrong type: expected an integer in -9223372036854775808..9223372036854775807, found 1.1e+59");
  EXPECT_HAS(error_of([] { io::adapter_config_from_json(R"({"peft_type":"LORA","target_modules":["q"],"r":18446744073709551615})"); }),
             "field 'r' has the wrong type");
  EXPECT_HAS(error_of([] { EncoderConfig::from_json(R"({"hidden_size":2.5})"); }), "field 'hidden_size' has the wrong type");
  EXPECT_HAS(error_of([] {
               Tokenizer::from_json(R"({"model":{"vocab":{"[UNK]":0,"[CLS]":1}},"post_processor":{"type":"TemplateProcessing",)"
                                    R"("single":[{"SpecialToken":{"id":"[CLS]"}}],"pair":[],"special_tokens":{"[CLS]":{"ids":[1e40]}}}})");
             }),
             "ids holds 1e+40, expected integer ids");
}

}  // namespace
