#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gsoft/io/safetensors.h"
#include "support/helpers.h"

using namespace gsoft;
namespace fs = std::filesystem;

namespace {

using gsoft::test::scratch_dir;
const auto write_raw = gsoft::test::write_raw_safetensors;

void expect_read_error(const fs::path& p, const std::string& needle) {
  try {
    io::read_safetensors(p.string());
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Safetensors, RoundTripDtypesShapesAndMetadata) {
  auto dir = scratch_dir("rt");
  std::map<std::string, torch::Tensor> t{
      {"a.weight", torch::randn({3, 4})},
      {"b", torch::randn({2, 5}, torch::kFloat64)},
      {"half", torch::randn({7}).to(torch::kHalf)},
      {"bf", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"idx", torch::arange(5, torch::kLong)},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::zeros({0, 3})},
  };
  auto path = (dir / "x.safetensors").string();
  io::write_safetensors(path, t, {{"format", "pt"}});
  auto f = io::read_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  ASSERT_EQ(f.tensors.size(), t.size());
  for (const auto& [k, v] : t) {
    ASSERT_TRUE(f.tensors.count(k)) << k;
    EXPECT_EQ(f.tensors[k].scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(f.tensors[k], v)) << k;
  }
  // Header padded to a multiple of 8.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(in.get())) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  fs::remove_all(dir);
}

// The metadata alone, from the header: equal to what the full read returns, empty without any,
// and the same header errors.
TEST(Safetensors, MetadataWithoutTheData) {
  auto dir = scratch_dir("meta");
  const auto with = (dir / "with.safetensors").string(), without = (dir / "without.safetensors").string();
  io::write_safetensors(with, {{"w", torch::randn({64, 64})}}, {{"options", "{\"lr\":0.0003}"}, {"step", "300"}});
  io::write_safetensors(without, {{"w", torch::randn({2})}});
  EXPECT_EQ(io::read_safetensors_metadata(with), io::read_safetensors(with).metadata);
  EXPECT_EQ(io::read_safetensors_metadata(with).at("step"), "300");
  EXPECT_TRUE(io::read_safetensors_metadata(without).empty());
  write_raw(dir / "bad.safetensors", "{\"__metadata__\":{\"k\":1}}", "");
  EXPECT_HAS(test::error_of([&] { io::read_safetensors_metadata((dir / "bad.safetensors").string()); }),
             "__metadata__ value for 'k' is not a string");
  fs::remove_all(dir);
}

TEST(Safetensors, RejectsMalformedFilesWithClearErrors) {
  auto dir = scratch_dir("bad");
  const std::string four_floats(16, '\0');
  {
    std::ofstream f(dir / "tiny.st", std::ios::binary);
    f << "abc";
  }
  expect_read_error(dir / "tiny.st", "too short");
  {
    std::ofstream f(dir / "huge.st", std::ios::binary);
    for (int i = 0; i < 7; ++i) f.put(i == 4 ? 1 : 0);  // 2^32 bytes
    f.put(0);
  }
  expect_read_error(dir / "huge.st", "exceeds the 100 MB limit");
  {
    // header length larger than the file
    std::ofstream f(dir / "past2.st", std::ios::binary);
    f.put(100);
    for (int i = 0; i < 7; ++i) f.put(0);
    f << "{}";
  }
  expect_read_error(dir / "past2.st", "runs past the end of the file");
  write_raw(dir / "json.st", "{not json", "");
  expect_read_error(dir / "json.st", "not valid JSON");
  write_raw(dir / "dtype.st", R"({"a":{"dtype":"F99","shape":[4],"data_offsets":[0,16]}})", four_floats);
  expect_read_error(dir / "dtype.st", "unknown dtype 'F99'");
  write_raw(dir / "size.st", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four_floats);
  expect_read_error(dir / "size.st", "F32 [3] needs 12 bytes, data_offsets give 16");
  write_raw(dir / "range.st", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", four_floats);
  expect_read_error(dir / "range.st", "outside the data buffer of 16 bytes");
  write_raw(dir / "more.st", R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", four_floats);
  expect_read_error(dir / "more.st", "F32 [8] needs 8 elements of 4 bytes, more than the 16-byte data buffer holds");
  write_raw(dir / "overlap.st",
            R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})",
            four_floats);
  expect_read_error(dir / "overlap.st", "overlap");
  write_raw(dir / "dup.st",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
            four_floats);
  expect_read_error(dir / "dup.st", "duplicate tensor name 'a'");
  write_raw(dir / "overflow.st",
            R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})", four_floats);
  expect_read_error(dir / "overflow.st", "overflows");
  std::string deep(200000, '[');  // would overflow the stack of a recursive parser
  write_raw(dir / "deep.st", R"({"a":)" + deep, "");
  expect_read_error(dir / "deep.st", "nests deeper");
  expect_read_error(dir / "missing.st", "cannot open");
  fs::remove_all(dir);
}

TEST(Safetensors, WrittenFilesGetTheUmaskMode) {
  auto dir = scratch_dir("mode");
  const mode_t old = ::umask(022);
  auto path = (dir / "m.safetensors").string();
  io::write_safetensors(path, {{"a", torch::ones({2})}});
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  fs::remove_all(dir);
}

TEST(Safetensors, FailedWriteLeavesExistingFileIntact) {
  auto dir = scratch_dir("atomic");
  auto path = (dir / "keep.safetensors").string();
  io::write_safetensors(path, {{"a", torch::ones({2})}});
  // A tensor that cannot be written (unsupported dtype) fails before the rename.
  EXPECT_THROW(io::write_safetensors(path, {{"a", torch::zeros({2})}, {"c", torch::zeros({2}, torch::kComplexFloat)}}),
               std::invalid_argument);
  auto f = io::read_safetensors(path);
  EXPECT_TRUE(torch::equal(f.tensors.at("a"), torch::ones({2})));
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++files; }
  EXPECT_EQ(files, 1u);  // no temporary left behind
  // A directory that cannot be written names the path.
  if (::geteuid() != 0) {
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW(io::write_safetensors(path, {{"a", torch::zeros({2})}}), std::runtime_error);
    fs::permissions(dir, fs::perms::owner_all);
  }
  EXPECT_THROW(io::write_safetensors((dir / "no/such/dir/x.safetensors").string(), {{"a", torch::zeros({2})}}),
               std::runtime_error);
  fs::remove_all(dir);
}
