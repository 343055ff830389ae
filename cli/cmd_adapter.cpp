// gsoft adapter info: what an adapter directory holds.
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "gsoft/io/adapter_io.h"

namespace gsoft::cli {
namespace {

struct AdapterInfoOptions {
  std::string dir;
};

void run_adapter_info(const AdapterInfoOptions& opt) {
  const auto adapter = io::read_adapter(opt.dir);
  const auto& c = adapter.config;
  std::cout << "method          " << to_string(c.method) << "\n";
  std::string targets;
  for (const auto& t : c.target_modules) targets += (targets.empty() ? "" : ", ") + t;
  if (!c.target_regex.empty()) targets = "regex " + c.target_regex;
  std::cout << "targets         " << targets << "\n";
  if (c.method != Method::LoRA && c.method != Method::Full)
    std::cout << "blocks          " << (c.block_size ? "block_size " + std::to_string(c.block_size)
                                                      : "nblocks " + std::to_string(c.nblocks))
              << "\n";
  if (c.method == Method::GSOFT || c.method == Method::DoubleGSOFT)
    std::cout << "parametrization " << to_string(c.parametrization) << ", layout " << to_string(c.layout)
              << ", scale " << (c.scale ? "on" : "off") << "\n";
  if (c.method == Method::LoRA) std::cout << "rank            " << c.r << ", alpha " << c.lora_alpha << "\n";
  int64_t total = 0;
  for (const auto& [module, tensors] : io::split_adapter_tensors(adapter).modules) {
    int64_t n = 0;
    for (const auto& [name, t] : tensors) n += t.numel();
    total += n;
    std::cout << "  " << std::left << std::setw(60) << module << std::right << std::setw(10) << n << "\n";
  }
  int64_t all = 0;
  for (const auto& [key, t] : adapter.tensors) all += t.numel();
  std::cout << "adapter parameters " << total << "; modules_to_save parameters " << (all - total) << "; total " << all
            << "\n";
}

}  // namespace

void setup_adapter(CLI::App& app, Runners& runners) {
  auto* adapter = app.add_subcommand("adapter", "Inspect adapter directories");
  adapter->require_subcommand(1);
  auto opt = std::make_shared<AdapterInfoOptions>();
  auto* info = adapter->add_subcommand("info", "Print the method, the targets, and per-module and total parameter counts");
  info->add_option("dir", opt->dir, "Adapter directory")->required()->check(CLI::ExistingDirectory);
  runners.push_back({info, [opt] { run_adapter_info(*opt); }});
}

}  // namespace gsoft::cli
