#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>

#include "gsoft/core/runtime.h"
#include "gsoft/version.h"

TEST(Runtime, ReportsVersionsThreadsAndSimd) {
  const auto info = gsoft::runtime_info();
  EXPECT_EQ(info.gsoft_version, GSOFT_VERSION);
  EXPECT_FALSE(info.torch_version.empty());
  EXPECT_GE(info.threads, 1);
  EXPECT_GE(info.hardware_threads, 1);
  EXPECT_NE(info.simd_cpu, "");
}

// The setup script must make libtorch load OpenBLAS, not the reference BLAS (10x slower), and
// its OpenMP build, which shares libtorch's thread pool instead of oversubscribing the cores.
TEST(Runtime, LibtorchLoadsOpenMPOpenBLAS) {
  const auto info = gsoft::runtime_info();
  EXPECT_NE(info.blas_library.find("openblas-openmp"), std::string::npos) << info.blas_library;
  EXPECT_EQ(info.blas_library.find("openblas-pthread"), std::string::npos) << info.blas_library;
}

TEST(Runtime, SetThreadsValidatesAndApplies) {
  const int before = gsoft::num_threads();
  gsoft::set_num_threads(1);
  EXPECT_EQ(gsoft::num_threads(), 1);
  gsoft::set_num_threads(before);
  try {
    gsoft::set_num_threads(0);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("got 0"), std::string::npos) << e.what();
  }
}

namespace {
long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}
}  // namespace

// A 64 MB block freed and allocated again comes back from the heap already mapped: touching it
// costs no page faults (16,384 of them when the block is mapped fresh).
TEST(Runtime, KeepFreedMemoryReusesFreedBlocksWithoutPageFaults) {
#if defined(__GLIBC__)
  ASSERT_TRUE(gsoft::keep_freed_memory());
  const size_t bytes = size_t{64} << 20;
  auto fill_and_free = [&] {
    char* p = static_cast<char*>(std::malloc(bytes));
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, bytes);
    asm volatile("" : : "r"(p) : "memory");  // keep the allocation and the writes
    std::free(p);
  };
  fill_and_free();
  const long before = minor_faults();
  fill_and_free();
  EXPECT_LT(minor_faults() - before, 256);
#else
  EXPECT_FALSE(gsoft::keep_freed_memory());
#endif
}
