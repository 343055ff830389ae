#pragma once
// Wall-clock timing for the bench commands: warm up, then take the median of repeated runs.
#include <algorithm>
#include <chrono>
#include <vector>

namespace gsoft::cli {

// Median milliseconds of fn() over at least min_reps runs and at least min_seconds in total.
template <typename F>
double median_ms(F&& fn, int warmup = 2, int min_reps = 5, double min_seconds = 0.3) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  double total = 0;
  while (static_cast<int>(ms.size()) < min_reps || total < min_seconds * 1e3) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    total += ms.back();
    if (ms.size() >= 200) break;
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace gsoft::cli
