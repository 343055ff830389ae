#pragma once
// Each subcommand lives in its own file: an options struct, a run function, and a setup function
// that registers its flags and its runner. main.cpp lists the setups and, after the whole command
// line has parsed and validated, runs the runner of the command that was chosen.
#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace gsoft::cli {

struct Runner {
  CLI::App* command;
  std::function<void()> run;
};
using Runners = std::vector<Runner>;

// Thrown by a runner to end the program with this status after a clean stop (e.g. 130 after an
// interrupt that saved a checkpoint).
struct ExitStatus {
  int code;
};

void setup_info(CLI::App& app, Runners& runners);
void setup_demo(CLI::App& app, Runners& runners);
void setup_bench(CLI::App& app, Runners& runners);
void setup_merge(CLI::App& app, Runners& runners);
void setup_adapter(CLI::App& app, Runners& runners);
void setup_bench_train(CLI::App* bench, Runners& runners);
void setup_train(CLI::App& app, Runners& runners);
void setup_eval(CLI::App& app, Runners& runners);
void setup_predict(CLI::App& app, Runners& runners);
void setup_pretrain(CLI::App& app, Runners& runners);
void setup_quickstart(CLI::App& app, Runners& runners);
void setup_baseline(CLI::App& app, Runners& runners);
void setup_compare(CLI::App& app, Runners& runners);
void setup_lipconv(CLI::App& app, Runners& runners);
void setup_bench_lipconv(CLI::App* bench, Runners& runners);
void setup_diffusion(CLI::App& app, Runners& runners);
void setup_diffusion_pretrain(CLI::App* diffusion, Runners& runners);
void setup_diffusion_eval(CLI::App* diffusion, Runners& runners);
void setup_diffusion_dreambooth(CLI::App* diffusion, Runners& runners);
void setup_diffusion_compare(CLI::App* diffusion, Runners& runners);

}  // namespace gsoft::cli
