// gsoft command-line tool: a thin layer over the library. Errors in the library arrive as
// exceptions; here they become a message and a non-zero exit status (2 for usage errors).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <unistd.h>
#include <vector>

#include "commands.h"
#include "distributed.h"
#include "json_config.h"
#include "gsoft/core/runtime.h"
#include "gsoft/version.h"

// How long an idle OpenMP thread spins before it sleeps. libgomp's default (300,000 spins, about
// a millisecond) makes a waiting thread burn the time slice that a preempted sibling needs when
// another process shares the cores: with one busy process on the 2-core machine, a GSOFT layer's
// fwd+bwd slowed 2.4-2.5x against the frozen layer's 1.9-2.1x. With 10,000 spins it slowed
// 1.9x, like the frozen layer, and quiet runs measured no slower (docs/benchmarks.md, session 12);
// 1,000 spins made small layers slower. A value the user exported (or OMP_WAIT_POLICY) wins.
//
// libgomp reads the setting once, in its constructor. The executable's preinit_array runs before
// any library's constructor, but there getenv does not work yet and a setenv would be lost: libc's
// own constructor then sets the environment to the one the process started with. So the process
// re-executes itself with the variable added (the environment is read from envp). The libraries
// are then loaded twice (about 0.2 s), but their constructors (libtorch's operator registry) run once.
extern "C" void gsoft_default_thread_wait(int, char** argv, char** envp) {
  if (!argv || !envp) return;
  size_t n = 0;
  for (; envp[n]; ++n)
    if (std::strncmp(envp[n], "GOMP_SPINCOUNT=", 15) == 0 || std::strncmp(envp[n], "OMP_WAIT_POLICY=", 16) == 0) return;
  std::vector<char*> env(envp, envp + n);
  static char spincount[] = "GOMP_SPINCOUNT=10000";
  env.push_back(spincount);
  env.push_back(nullptr);
  execve("/proc/self/exe", argv, env.data());  // returns only on failure: run with libgomp's default
}
__attribute__((section(".preinit_array"), used)) static void (*const gsoft_preinit)(int, char**, char**) =
    &gsoft_default_thread_wait;

namespace {

using Setup = void (*)(CLI::App&, gsoft::cli::Runners&);
const Setup kCommands[] = {gsoft::cli::setup_info, gsoft::cli::setup_demo, gsoft::cli::setup_bench,
                           gsoft::cli::setup_merge, gsoft::cli::setup_adapter, gsoft::cli::setup_train,
                           gsoft::cli::setup_eval, gsoft::cli::setup_predict, gsoft::cli::setup_pretrain,
                           gsoft::cli::setup_quickstart, gsoft::cli::setup_baseline,
                           gsoft::cli::setup_compare, gsoft::cli::setup_lipconv, gsoft::cli::setup_diffusion};

int usage_error(const CLI::App& app, const std::string& msg) {
  std::cerr << "error: " << msg << "\n\n" << app.help();
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  gsoft::cli::remember_invocation(argc, argv);
  CLI::App app{
      "gsoft: orthogonal fine-tuning with Group-and-Shuffle matrices (GSOFT, arXiv 2406.10019).\n"
      "Global options go before the command; run 'gsoft <command> --help' for its options.",
      "gsoft"};
  app.set_version_flag("--version", std::string("gsoft ") + GSOFT_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)")
      ->check(CLI::PositiveNumber);
  gsoft::cli::Runners runners;
  for (auto setup : kCommands) setup(app, runners);
  // Unknown words are collected and reported below with the list of commands.
  app.allow_extras();

  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    try {
      args = gsoft::cli::expand_json_config(args);
    } catch (const std::runtime_error& e) {
      return usage_error(app, e.what());
    }
    std::reverse(args.begin(), args.end());  // CLI11 takes a vector last-first
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(app, e.what());
  }

  std::string names;
  for (const auto* sub : app.get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
  const auto extras = app.remaining();
  if (!extras.empty()) {
    const auto& w = extras.front();
    if (!w.empty() && w[0] == '-') return usage_error(app, "unknown option '" + w + "'");
    return usage_error(app, "unknown command '" + w + "'; expected one of: " + names);
  }
  const gsoft::cli::Runner* chosen = nullptr;
  for (const auto& r : runners)
    if (r.command->parsed()) chosen = &r;
  if (!chosen) return usage_error(app, "no command given; expected one of: " + names);

  try {
    // All cores by default: libgomp may start libtorch with a single thread.
    gsoft::set_num_threads(threads > 0 ? threads : gsoft::runtime_info().hardware_threads);
    gsoft::keep_freed_memory();  // training re-allocates the same buffers every step
    chosen->run();
  } catch (const gsoft::cli::ExitStatus& e) {
    return e.code;
  } catch (const CLI::ParseError& e) {  // option combinations checked when the command runs
    return usage_error(app, e.what());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
