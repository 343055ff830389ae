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
  std::string thread_wait;     // the OpenMP wait settings in the environment (GOMP_SPINCOUNT, OMP_WAIT_POLICY)
};

RuntimeInfo runtime_info();

// Sets libtorch's intra-op thread count. Throws std::invalid_argument for n < 1.
void set_num_threads(int n);
int num_threads();

// The process's peak resident set size so far, in MiB (getrusage).
double peak_rss_mb();

// Makes glibc's malloc serve every allocation from its heap and keep freed memory for reuse,
// instead of mapping large blocks fresh and returning them to the kernel. Training frees and
// re-allocates the same activation-sized buffers every step, and each page returned to the
// kernel comes back through a page fault that zero-fills it: 13% of a GSOFT layer's training
// step on the 2-core machine (docs/benchmarks.md). The price: memory freed after the peak stays
// with the process. Returns false, changing nothing, where malloc is not glibc's.
bool keep_freed_memory();

}  // namespace gsoft
