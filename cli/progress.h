#pragma once
// Progress lines for long commands, and SIGINT/SIGTERM turned into a polite stop request.
#include <atomic>
#include <ctime>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "gsoft/train/trainer.h"

namespace gsoft::cli {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

// Runs without epochs (drawn scenes, not passes over a data set) say epochs 0 and show none.
inline std::string format_step(const StepInfo& s) {
  char epoch[64] = "";
  if (s.epochs > 0)
    std::snprintf(epoch, sizeof epoch, " | epoch %lld/%lld", static_cast<long long>(s.epoch), static_cast<long long>(s.epochs));
  char buf[240];
  std::snprintf(buf, sizeof buf, "step %lld/%lld%s | loss %.4f | lr %.2e | %.2f it/s | ETA %s", static_cast<long long>(s.step),
                static_cast<long long>(s.total_steps), epoch, s.loss, s.lr, s.steps_per_second,
                format_duration(s.eta_seconds).c_str());
  return buf;
}

// The first SIGINT or SIGTERM asks the trainer to save and stop; a second one kills as usual. A
// repeat within a second counts as the same request: `timeout` signals the command and then its
// process group, so one request can arrive twice, and on a busy machine the handler may run between.
inline std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

inline std::atomic<int64_t>& first_stop_ms() {
  static std::atomic<int64_t> ms{-1};
  return ms;
}

inline void install_stop_handlers() {
  auto handler = [](int sig) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe, unlike std::chrono's clocks
    const int64_t ms = static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
    const int64_t first = first_stop_ms().load();
    if (first < 0) {
      first_stop_ms().store(ms);
      stop_requested().store(true);
    } else if (ms - first > 1000) {
      std::signal(sig, SIG_DFL);
      std::raise(sig);
    }
  };
  std::signal(SIGINT, handler);
  std::signal(SIGTERM, handler);
}

// Callbacks that print to stderr as `who`: a progress line on the first and last step and every
// log_every steps, each evaluation, each event (checkpoint, resume); and the stop request from
// SIGINT/SIGTERM, whose handlers this installs.
inline TrainCallbacks console_callbacks(const std::string& who, int64_t log_every) {
  install_stop_handlers();
  TrainCallbacks cb;
  cb.on_step = [log_every](const StepInfo& s) {
    if (s.step == 1 || s.step == s.total_steps || (log_every > 0 && s.step % log_every == 0))
      std::cerr << format_step(s) << std::endl;
  };
  cb.on_eval = [](const EvalInfo& e) {
    std::cerr << "eval step " << e.step << ": loss " << e.loss;
    for (const auto& [k, v] : e.metrics) std::cerr << " | " << k << " " << v;
    std::cerr << (e.best ? " (best)" : "") << std::endl;
  };
  cb.on_event = [who](const std::string& e) { std::cerr << who << ": " << e << std::endl; };
  cb.should_stop = [] { return stop_requested().load(); };
  return cb;
}

}  // namespace gsoft::cli
