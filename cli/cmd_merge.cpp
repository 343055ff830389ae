// gsoft merge: fold an adapter into a plain safetensors checkpoint, without a model definition.
#include <chrono>
#include <iostream>

#include "commands.h"
#include "gsoft/io/adapter_io.h"

namespace gsoft::cli {
namespace {

struct MergeOptions {
  std::string base;
  std::string adapter;
  std::string out;
};

void run_merge(const MergeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  std::cerr << "merge: " << opt.adapter << " into " << opt.base << "\n";
  const auto report = io::merge_to(opt.base, opt.adapter, opt.out);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "merged " << report.merged_modules.size() << " modules, wrote " << report.saved_modules_tensors.size()
            << " modules_to_save tensors, copied " << report.copied_tensors << " tensors unchanged -> " << opt.out
            << " (" << s << " s)\n";
}

}  // namespace

void setup_merge(CLI::App& app, Runners& runners) {
  auto opt = std::make_shared<MergeOptions>();
  auto* cmd = app.add_subcommand(
      "merge",
      "Merge an adapter into a safetensors checkpoint: for each adapted module M, M.weight becomes the merged\n"
      "weight (float32 arithmetic, dtype kept); every other tensor is copied unchanged. The output is written\n"
      "to a temporary file and renamed, so an existing file is never left half-written.\n"
      "Example: gsoft merge --base model.safetensors --adapter run/adapter --out merged.safetensors");
  cmd->add_option("--base", opt->base, "Base checkpoint: a .safetensors file or a directory (model.safetensors or a sharded index)")
      ->required();
  cmd->add_option("--adapter", opt->adapter, "Adapter directory (adapter_config.json + adapter_model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", opt->out,
                  "Output .safetensors file, or a directory: model.safetensors plus the base directory's other files\n"
                  "(config.json, tokenizer files), so it loads like the base")
      ->required();
  runners.push_back({cmd, [opt] { run_merge(*opt); }});
}

}  // namespace gsoft::cli
