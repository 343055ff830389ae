// Faults while writing (docs/reliability.md): a process killed in the middle of a write, a full
// disk and a read-only directory all leave the previous file intact and nothing partial under the
// final name. The kill is made exact with RLIMIT_FSIZE: the kernel sends SIGXFSZ to the writer at
// the first write past the limit. With the signal ignored the same write fails with EFBIG, which
// stands in for ENOSPC (a full disk) on the same code path.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include "adapters/method_cases.h"
#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "support/helpers.h"

namespace {

using namespace gsoft;
namespace fs = std::filesystem;

// Names of the files in `dir`.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Runs `write` in a child whose files may not grow past `limit` bytes; returns the wait status.
int write_in_child(size_t limit, bool ignore_sigxfsz, const std::function<int()>& write) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit none {0, 0}, fsize {limit, limit};
    ::setrlimit(RLIMIT_CORE, &none);
    ::setrlimit(RLIMIT_FSIZE, &fsize);
    if (ignore_sigxfsz) ::signal(SIGXFSZ, SIG_IGN);
    int rc = 3;
    try {
      rc = write();
    } catch (...) {
      rc = 4;
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(WriteFaults, CheckpointSaveKilledMidWriteLeavesThePreviousFile) {
  const auto dir = test::scratch_dir("fault_kill");
  const std::string path = (dir / "checkpoint.safetensors").string();
  io::write_safetensors(path, {{"w", torch::arange(4, torch::kFloat)}});
  const auto before = test::read_text(path);
  const torch::Tensor big = torch::rand({4 << 20});  // 16 MiB, killed after 2 MiB
  const int status = write_in_child(2 << 20, false, [&] {
    io::write_safetensors(path, {{"w", big}});
    return 0;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_EQ(test::read_text(path), before);
  EXPECT_TRUE(torch::equal(io::read_safetensors(path).tensors.at("w"), torch::arange(4, torch::kFloat)));
  // The killed writer's temporary (it could not clean up) is the only other file, under its own name.
  const auto names = listing(dir);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "checkpoint.safetensors");
  EXPECT_TRUE(starts_with(names[1], "checkpoint.safetensors.tmp.")) << names[1];
  EXPECT_LE(fs::file_size(dir / names[1]), size_t{2} << 20);
  fs::remove_all(dir);
}

TEST(WriteFaults, FullDiskFailsWithTheReasonAndRemovesTheTemporary) {
  const auto dir = test::scratch_dir("fault_full");
  const std::string path = (dir / "checkpoint.safetensors").string();
  io::write_safetensors(path, {{"w", torch::arange(4, torch::kFloat)}});
  const auto before = test::read_text(path);
  const torch::Tensor big = torch::rand({4 << 20});
  const std::string log = (dir / "error.txt").string();
  const int status = write_in_child(2 << 20, true, [&] {
    const std::string message = test::error_of([&] { io::write_safetensors(path, {{"w", big}}); });
    {
      struct rlimit unlimited {RLIM_INFINITY, RLIM_INFINITY};
      ::setrlimit(RLIMIT_FSIZE, &unlimited);
      test::write_text(log, message);
    }
    return message.empty() ? 5 : 0;
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_HAS(test::read_text(log), path + ": write failed: File too large");
  EXPECT_EQ(test::read_text(path), before);
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"checkpoint.safetensors", "error.txt"}));
  fs::remove_all(dir);
}

TEST(WriteFaults, ReplaceDirectorySwapsWholeOrNotAtAll) {
  const auto dir = test::scratch_dir("fault_dir");
  const std::string best = (dir / "best").string();
  auto fill = [](const std::string& tag) {
    return [tag](const std::string& d) {
      fs::create_directories(d);
      io::write_file_atomic((fs::path(d) / "a.txt").string(), tag);
      io::write_file_atomic((fs::path(d) / "b.txt").string(), tag);
    };
  };
  io::replace_directory(best, fill("one"));
  EXPECT_EQ(test::read_text(dir / "best" / "b.txt"), "one");
  // A writer that fails half-way leaves the old directory and no temporary.
  EXPECT_THROW(io::replace_directory(best,
                                     [&](const std::string& d) {
                                       fill("two")(d);
                                       throw std::runtime_error("disk full");
                                     }),
               std::runtime_error);
  EXPECT_EQ(test::read_text(dir / "best" / "a.txt"), "one");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"best"});
  // A temporary left by a killed run is replaced, and the swap brings both files at once.
  fill("stale")((dir / "best.tmp").string());
  io::replace_directory(best, fill("three"));
  EXPECT_EQ(test::read_text(dir / "best" / "a.txt"), "three");
  EXPECT_EQ(test::read_text(dir / "best" / "b.txt"), "three");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"best"});
  fs::remove_all(dir);
}

#ifdef GSOFT_CLI_PATH
struct Net : torch::nn::Module {
  Net() { layer = register_module("layer", AdaptableLinear(test::kIn, test::kOut)); }
  AdaptableLinear layer{nullptr};
};

// `gsoft merge` as a child process: killed mid-write, on a full disk, and into a read-only
// directory, each after a good merge whose output must survive.
TEST(WriteFaults, MergeKeepsThePreviousOutputWhenKilledOrRefused) {
  const auto dir = test::scratch_dir("fault_merge");
  auto cfg = test::make_config(Method::GSOFT);
  cfg.block_size = 8;
  cfg.init_weights = false;
  Net net;
  std::map<std::string, torch::Tensor> base;
  for (const auto& p : net.named_parameters()) base[p.key()] = p.value().detach().clone();
  base["extra.weight"] = torch::rand({4 << 20});  // 16 MiB that merge copies through
  io::write_safetensors((dir / "base.safetensors").string(), base);
  inject_adapters(net, cfg);
  io::save_adapter((dir / "adapter").string(), net, cfg);
  fs::create_directories(dir / "out");
  const fs::path out = dir / "out" / "merged.safetensors";
  const std::string merge = std::string(GSOFT_CLI_PATH) + " merge --base " + (dir / "base.safetensors").string() +
                            " --adapter " + (dir / "adapter").string() + " --out " + out.string();
  const fs::path log = dir / "log.txt";
  ASSERT_EQ(test::run_command(merge, log), 0) << test::read_text(log);
  const std::string good = test::read_text(out);

  // Killed by SIGXFSZ past 2048 blocks (1 MiB in dash, 2 MiB in bash).
  EXPECT_NE(test::run_command("ulimit -f 2048; exec " + merge, log), 0);
  EXPECT_EQ(test::read_text(out), good);
  for (const auto& name : listing(dir / "out"))
    EXPECT_TRUE(name == "merged.safetensors" || starts_with(name, "merged.safetensors.tmp.")) << name;
  for (const auto& name : listing(dir / "out"))
    if (name != "merged.safetensors") fs::remove(dir / "out" / name);

  // A full disk: the error names the file and the reason, and the temporary is gone.
  EXPECT_EQ(test::run_command("trap '' XFSZ; ulimit -f 2048; exec " + merge, log), 1);
  EXPECT_HAS(test::read_text(log), out.string() + ": write failed: File too large");
  EXPECT_EQ(test::read_text(out), good);
  EXPECT_EQ(listing(dir / "out"), std::vector<std::string>{"merged.safetensors"});

  // A read-only directory. Root ignores permissions, so as root merge runs as nobody.
  fs::permissions(dir / "out", fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                   fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  std::string as_user, cli = GSOFT_CLI_PATH;
  if (::geteuid() == 0) {
    // A copy of the binary in the scratch directory, which nobody can reach wherever the build is.
    fs::copy_file(cli, dir / "gsoft");
    cli = (dir / "gsoft").string();
    as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
    if (test::run_command(as_user + cli + " --version", log) != 0) {
      fs::permissions(dir / "out", fs::perms::owner_all);
      fs::remove_all(dir);
      GTEST_SKIP() << "cannot run gsoft as nobody here: " << test::read_text(log);
    }
  }
  EXPECT_EQ(test::run_command(as_user + cli + merge.substr(std::string(GSOFT_CLI_PATH).size()), log), 1);
  EXPECT_HAS(test::read_text(log), "cannot create a temporary file beside it: Permission denied");
  EXPECT_EQ(test::read_text(out), good);
  fs::permissions(dir / "out", fs::perms::owner_all);
  EXPECT_EQ(listing(dir / "out"), std::vector<std::string>{"merged.safetensors"});
  fs::remove_all(dir);
}
#endif

}  // namespace
