#pragma once
// Data-parallel training from the command line, shared by every training command:
//   gsoft train --nproc 2 ...                       N workers on this machine (loopback)
//   gsoft train --nnodes 2 --node-rank 0 --nproc 1 --master-addr HOST --master-port 29500 ...
//   RANK=1 WORLD_SIZE=2 MASTER_ADDR=HOST MASTER_PORT=29500 gsoft train ...   (torchrun's variables)
// The launching process starts the workers (this program again, with RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT set), splits the cores between them, and exits with their worst
// status; when one worker fails it names that rank and stops the others.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "gsoft/dist/group.h"
#include "gsoft/train/trainer.h"

namespace gsoft::cli {

struct DistCliOptions {
  int64_t nproc = 1;
  int64_t nnodes = 1;
  int64_t node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 0;  // 0: a free port on one machine, 29500 across machines
  std::string backend = "gloo";
  double timeout = 60;      // seconds
  double bucket_mb = 1;     // GradReducer's bucket size
};

void add_dist_options(CLI::App* cmd, DistCliOptions& o);

// main() records the command line so that the launcher can start the workers with it.
void remember_invocation(int argc, char** argv);

// In the launching process (--nproc or --nnodes above 1, and not itself a worker): starts this
// machine's workers, waits for them and returns their worst exit status. Otherwise nullopt: this
// process trains.
std::optional<int> launch_workers(const DistCliOptions& o);

// The group this process trains in: from the launcher's or torchrun's environment variables, or a
// group of one.
std::unique_ptr<dist::Group> join_group(const DistCliOptions& o);

// How every training command starts: in the launching process, the workers run and this returns
// null (throwing ExitStatus with their worst status when one failed), so the command returns;
// otherwise the group this process trains in.
std::unique_ptr<dist::Group> launch_or_join(const DistCliOptions& o);

// After training, true on the ranks other than 0, which then return (ExitStatus 130 when the run
// was interrupted) and leave the reporting to rank 0.
bool other_rank_done(const dist::Group& group, bool interrupted);

// Rank 0 keeps `console` (progress lines, evaluations, events); the other ranks keep only its stop
// request, so one rank reports.
TrainCallbacks callbacks_for_rank(const dist::Group& group, const TrainCallbacks& console);

}  // namespace gsoft::cli
