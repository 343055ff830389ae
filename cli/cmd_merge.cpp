// gsoft merge: fold an adapter into a plain safetensors checkpoint, without a model definition.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/checkpoint.h"

namespace gsoft::cli {
namespace {

struct MergeOptions {
  std::string base;
  std::string adapter;
  std::string out;
};

void run_merge(const MergeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto base = io::read_checkpoint(opt.base);
  auto adapter = io::read_adapter(opt.adapter);
  std::cerr << "merge: " << to_string(adapter.config.method) << " adapter from " << opt.adapter << " into "
            << base.tensors.size() << " tensors of " << opt.base << "\n";
  io::MergeReport report;
  auto merged = io::merge_checkpoint(base.tensors, adapter, &report);
  auto metadata = base.metadata;
  metadata["format"] = "pt";
  metadata["gsoft_merged_adapter"] = to_string(adapter.config.method);
  auto out = opt.out;
  if (std::filesystem::is_directory(out)) out = (std::filesystem::path(out) / "model.safetensors").string();
  io::write_safetensors(out, merged, metadata);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "merged " << report.merged_modules.size() << " modules, wrote " << report.saved_modules_tensors.size()
            << " modules_to_save tensors, copied " << report.copied_tensors << " tensors unchanged -> " << out << " ("
            << s << " s)\n";
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
  cmd->add_option("--out", opt->out, "Output .safetensors file (or a directory: writes model.safetensors in it)")->required();
  runners.push_back({cmd, [opt] { run_merge(*opt); }});
}

}  // namespace gsoft::cli
