#pragma once
// Timing for the bench commands: warm up, then take the median of repeated runs, in wall-clock time
// and in the process's CPU time (all threads, user and system). On a shared machine the CPU time is
// the steadier measure: time the OS gives to other processes does not count, page faults do.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace gsoft::cli {

// Median and worst milliseconds of fn() over at least min_reps runs and at least min_seconds in
// total (the worst shows what a busy machine does to a step).
struct Timing {
  double median = 0, worst = 0, cpu_median = 0;
  int64_t reps = 0;
};

inline double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

template <typename F>
Timing time_ms(F&& fn, int warmup = 2, int min_reps = 5, double min_seconds = 0.3) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms, cpu;
  double total = 0;
  while (static_cast<int>(ms.size()) < min_reps || total < min_seconds * 1e3) {
    const double c0 = process_cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    cpu.push_back(process_cpu_ms() - c0);
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    total += ms.back();
    if (ms.size() >= 200) break;
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  return {ms[ms.size() / 2], ms.back(), cpu[cpu.size() / 2], static_cast<int64_t>(ms.size())};
}

// The middle value (the upper of the two middle ones for an even count); 0 for none.
inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

template <typename F>
double median_ms(F&& fn, int warmup = 2, int min_reps = 5, double min_seconds = 0.3) {
  return time_ms(fn, warmup, min_reps, min_seconds).median;
}

}  // namespace gsoft::cli
