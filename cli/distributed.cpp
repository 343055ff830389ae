#include "distributed.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "commands.h"
#include "gsoft/core/runtime.h"
#include "subprocess.h"

extern char** environ;

namespace gsoft::cli {
namespace {

constexpr const char* kWorkerVar = "GSOFT_DIST_WORKER";

std::vector<std::string>& invocation() {
  static std::vector<std::string> args;
  return args;
}

bool is_worker() { return std::getenv(kWorkerVar) != nullptr || std::getenv("WORLD_SIZE") != nullptr; }

// A port that was free a moment ago (the kernel's choice for port 0).
int64_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("distributed: cannot open a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("distributed: cannot find a free port on 127.0.0.1");
  }
  const int64_t port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& vars) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!vars.count(kv.substr(0, kv.find('=')))) env.push_back(kv);
  }
  for (const auto& [k, v] : vars) env.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("distributed: cannot start a worker: ") + std::strerror(errno));
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::execve(argv[0], argv.data(), envp.data());
    std::perror("gsoft: starting a worker");
    ::_exit(127);
  }
  return pid;
}

}  // namespace

void add_dist_options(CLI::App* cmd, DistCliOptions& o) {
  const char* g = "Distributed (docs/distributed.md)";
  cmd->add_option("--nproc", o.nproc, "Worker processes on this machine (data parallel; --batch-size stays the global batch)")
      ->check(CLI::PositiveNumber)->capture_default_str()->group(g);
  cmd->add_option("--nnodes", o.nnodes, "Machines taking part (each runs this command with its --node-rank)")
      ->check(CLI::PositiveNumber)->capture_default_str()->group(g);
  cmd->add_option("--node-rank", o.node_rank, "This machine's index in [0, --nnodes)")
      ->check(CLI::NonNegativeNumber)->capture_default_str()->group(g);
  cmd->add_option("--master-addr", o.master_addr, "Address of the machine with node rank 0")->capture_default_str()->group(g);
  cmd->add_option("--master-port", o.master_port, "Rendezvous port on the master (default: a free port on one machine, "
                                                  "29500 across machines)")
      ->check(CLI::Range(0, 65535))->group(g);
  cmd->add_option("--backend", o.backend, "Collective backend: gloo (CPU, tested) or nccl (CUDA builds of libtorch only)")
      ->check(CLI::IsMember({"gloo", "nccl"}))->capture_default_str()->group(g);
  cmd->add_option("--dist-timeout", o.timeout, "Seconds a rank waits for the others before it stops with an error")
      ->check(CLI::PositiveNumber)->capture_default_str()->group(g);
  cmd->add_option("--bucket-mb", o.bucket_mb, "Largest gradient bucket in MB: each starts its all-reduce as soon as the\n"
                                              "backward has filled it (a size above the model's waits for the whole backward)")
      ->check(CLI::PositiveNumber)->capture_default_str()->group(g);
}

void remember_invocation(int argc, char** argv) { invocation().assign(argv + 1, argv + argc); }

std::optional<int> launch_workers(const DistCliOptions& o) {
  if (is_worker() || o.nproc * o.nnodes == 1) return std::nullopt;
  if (o.node_rank >= o.nnodes)
    throw CLI::ValidationError("--node-rank", "must be below --nnodes (" + std::to_string(o.nnodes) + "), got " +
                                                  std::to_string(o.node_rank));
  const int64_t world = o.nproc * o.nnodes;
  const int64_t port = o.master_port > 0 ? o.master_port : (o.nnodes == 1 ? free_port() : 29500);
  std::vector<std::string> args{self_path()};
  bool has_threads = false;
  for (const auto& a : invocation()) has_threads = has_threads || a == "--threads" || a.rfind("--threads=", 0) == 0;
  if (!has_threads) {  // split this machine's cores between its workers
    const int64_t cores = runtime_info().hardware_threads;
    args.insert(args.end(), {"--threads", std::to_string(std::max<int64_t>(1, cores / o.nproc))});
  }
  args.insert(args.end(), invocation().begin(), invocation().end());
  std::cerr << "gsoft: starting " << o.nproc << " worker" << (o.nproc > 1 ? "s" : "") << " (ranks "
            << o.node_rank * o.nproc << "-" << (o.node_rank + 1) * o.nproc - 1 << " of " << world << "), rendezvous at "
            << o.master_addr << ":" << port << std::endl;

  // Ctrl-C reaches the workers (same process group), which save and stop; the launcher waits.
  struct sigaction ignore {}, old_int {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &old_int);
  std::map<pid_t, int64_t> ranks;
  for (int64_t local = 0; local < o.nproc; ++local) {
    const int64_t rank = o.node_rank * o.nproc + local;
    ranks[spawn(args, {{"RANK", std::to_string(rank)}, {"LOCAL_RANK", std::to_string(local)},
                       {"WORLD_SIZE", std::to_string(world)}, {"MASTER_ADDR", o.master_addr},
                       {"MASTER_PORT", std::to_string(port)}, {kWorkerVar, "1"}})] = rank;
  }
  int worst = 0;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool terminated = false;
  while (!ranks.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, failed ? WNOHANG : 0);
    if (pid > 0) {
      const int64_t rank = ranks[pid];
      ranks.erase(pid);
      const int code = exit_code(status);
      worst = std::max(worst, code);
      if (code != 0 && !failed) {
        failed = true;
        std::cerr << "gsoft: rank " << rank << " " << describe_status(status)
                  << (ranks.empty() ? "" : "; stopping the other workers") << std::endl;
        // The others notice through their next collective; a rank still waiting at the rendezvous
        // would not before the timeout, so after a short grace they are asked to stop.
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(std::min(o.timeout, 10.0) * 1000));
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (failed) {
      if (std::chrono::steady_clock::now() > deadline) {
        for (const auto& [p, r] : ranks) ::kill(p, terminated ? SIGKILL : SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        terminated = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  return worst;
}

std::unique_ptr<dist::Group> launch_or_join(const DistCliOptions& o) {
  if (const auto status = launch_workers(o)) {
    if (*status != 0) throw ExitStatus{*status};
    return nullptr;
  }
  return join_group(o);
}

bool other_rank_done(const dist::Group& group, bool interrupted) {
  if (group.is_main()) return false;
  if (interrupted) throw ExitStatus{130};
  return true;
}

TrainCallbacks callbacks_for_rank(const dist::Group& group, const TrainCallbacks& console) {
  if (group.is_main()) return console;
  TrainCallbacks quiet;
  quiet.should_stop = console.should_stop;
  return quiet;
}

std::unique_ptr<dist::Group> join_group(const DistCliOptions& o) {
  dist::DistOptions d;
  if (is_worker()) d = dist::DistOptions::from_env();
  d.backend = o.backend;
  d.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout * 1000));
  d.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(o.bucket_mb * (1 << 20)));
  return std::make_unique<dist::Group>(d);
}

}  // namespace gsoft::cli
