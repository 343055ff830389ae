// gsoft info: what this build and machine will use.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gsoft/core/runtime.h"

namespace gsoft::cli {
namespace {

struct InfoOptions {
  bool json = false;
};

void run_info(const InfoOptions& opt) {
  const auto info = runtime_info();
  if (opt.json) {
    nlohmann::json j{{"gsoft", info.gsoft_version},       {"libtorch", info.torch_version},
                     {"blas", info.blas_library},         {"threads", info.threads},
                     {"hardware_threads", info.hardware_threads},
                     {"simd_cpu", info.simd_cpu},         {"simd_compiled", info.simd_compiled},
                     {"thread_wait", info.thread_wait}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::cout << "gsoft          " << info.gsoft_version << "\n"
            << "libtorch       " << info.torch_version << "\n"
            << "BLAS           " << info.blas_library << "\n"
            << "threads        " << info.threads << " (hardware: " << info.hardware_threads << ")\n"
            << "SIMD (CPU)     " << info.simd_cpu << "\n"
            << "SIMD (kernels) " << info.simd_compiled << "\n"
            << "thread wait    " << info.thread_wait << "\n";
}

}  // namespace

void setup_info(CLI::App& app, Runners& runners) {
  auto opt = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Print the libtorch version, the BLAS in use, threads, SIMD level and the OpenMP wait setting");
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of a table");
  runners.push_back({cmd, [opt] { run_info(*opt); }});
}

}  // namespace gsoft::cli
