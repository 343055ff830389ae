#pragma once
// Pieces shared by the GS kernels (internal): aligned scratch, the work-sharing loop, and the
// AVX-512 switch.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GSOFT_AVX512 1
// GCC 12's AVX-512 headers trip -Wuninitialized on _mm512_undefined_ps inside unpack/shuffle.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace gsoft::kernels {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
std::unique_ptr<T[], FreeDeleter> aligned_buffer(int64_t count) {
  const size_t bytes = ((static_cast<size_t>(count) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

// Runs work(item, thread_state) for items [0, count) on libtorch's pool, handing out items one at
// a time from a shared counter rather than as fixed shares: on a busy machine a thread that the
// OS holds back delays only the item it is on while the others take the rest, where a fixed half
// would leave the whole step waiting for it. make_state() builds each thread's scratch once.
template <typename MakeState, typename Work>
void for_each_item(int64_t count, MakeState make_state, Work work) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    auto state = make_state();
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
         i = next.fetch_add(1, std::memory_order_relaxed))
      work(i, state);
  });
}

// How many chunks a backward splits its rows into, each with its own partial block gradients
// summed in chunk order afterwards: deterministic whichever thread takes which chunk. Several
// chunks per thread let idle threads take over from one the OS holds back; the partials' memory
// (partial_bytes each) caps their number.
inline int64_t backward_chunks(int64_t ntiles, int64_t partial_bytes) {
  const int64_t threads = std::max(1, at::get_num_threads());
  const int64_t cap = std::max<int64_t>(threads, (int64_t{16} << 20) / std::max<int64_t>(1, partial_bytes));
  return std::max<int64_t>(1, std::min({ntiles, 4 * threads, cap}));
}

}  // namespace gsoft::kernels
