#include "gsoft/core/runtime.h"

#include <ATen/Parallel.h>
#include <link.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <torch/version.h>

#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "gsoft/version.h"

namespace gsoft {
namespace {

int collect_blas(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  std::string name = info->dlpi_name ? info->dlpi_name : "";
  if (name.find("blas") == std::string::npos) return 0;
  char resolved[PATH_MAX];
  std::string path = realpath(name.c_str(), resolved) ? std::string(resolved) : name;
  // libtorch links libblas.so.3; the alternatives symlink decides which implementation that is.
  if (!out->empty()) *out += ", ";
  *out += path;
  return 0;
}

std::string cpu_simd() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  if (__builtin_cpu_supports("avx")) return "avx";
  if (__builtin_cpu_supports("sse4.2")) return "sse4.2";
  return "baseline";
}

std::string compiled_simd() {
#if defined(__AVX512F__)
  return "avx512f";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE4_2__)
  return "sse4.2";
#else
  return "baseline";
#endif
}

}  // namespace

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.gsoft_version = GSOFT_VERSION;
  info.torch_version = TORCH_VERSION;
  dl_iterate_phdr(collect_blas, &info.blas_library);
  if (info.blas_library.empty()) info.blas_library = "none loaded";
  info.simd_cpu = cpu_simd();
  info.simd_compiled = compiled_simd();
  info.threads = at::get_num_threads();
  info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  for (const char* name : {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"})
    if (const char* v = std::getenv(name))
      info.thread_wait += (info.thread_wait.empty() ? "" : " ") + std::string(name) + "=" + v;
  if (info.thread_wait.empty()) info.thread_wait = "libgomp's default";
  return info;
}

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("threads must be at least 1, got " + std::to_string(n));
  at::set_num_threads(n);
}

int num_threads() { return at::get_num_threads(); }

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  // No mmap (an mmap'd block goes back to the kernel when freed) and no trimming (the heap's
  // free top would go back too).
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

}  // namespace gsoft
