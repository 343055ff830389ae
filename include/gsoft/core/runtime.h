#pragma once
// Process-wide runtime facts and settings: threads, BLAS, SIMD.
#include <string>

namespace gsoft {

struct RuntimeInfo {
  std::string gsoft_version;
  std::string torch_version;
  std::string blas_library;    // resolved path of the BLAS shared object actually loaded
  std::string simd_cpu;        // widest SIMD the CPU supports (avx512f, avx2, sse4.2, ...)
  std::string simd_compiled;   // widest SIMD the kernels were compiled for
  int threads = 1;             // intra-op threads (at::get_num_threads)
  int hardware_threads = 1;    // std::thread::hardware_concurrency
};

RuntimeInfo runtime_info();

// Sets libtorch's intra-op thread count. Throws std::invalid_argument for n < 1.
void set_num_threads(int n);
int num_threads();

// The process's peak resident set size so far, in MiB (getrusage).
double peak_rss_mb();

}  // namespace gsoft
