// Data-parallel `gsoft train` over c10d Gloo on loopback: two ranks give the losses and the adapter
// of one process at the same global batch (launched by --nproc, and as two separately started
// processes through torchrun's variables, as two machines would); a killed worker stops the other
// with an error, the checkpoint stays loadable and the next run resumes with another rank count;
// a port in use and options that differ between ranks are clear errors.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "gsoft/io/png.h"
#include "gsoft/io/safetensors.h"
#include "support/cli_output.h"
#include "support/helpers.h"
#include "support/ports.h"
#include "support/tiny_model.h"

#ifdef GSOFT_CLI_PATH
namespace {

namespace fs = std::filesystem;
using gsoft::test::read_jsonl;
using gsoft::test::read_text;
using gsoft::test::run_command;

using gsoft::test::free_port;

// 37 evaluation rows: uneven evaluation shards.
struct Fixture : gsoft::test::TinyTrainDir {
  std::string cli = GSOFT_CLI_PATH;
  explicit Fixture(const std::string& name) : TinyTrainDir(name, 200, 37) {}
  std::string train_args(const fs::path& out, const std::string& extra) const {
    return TinyTrainDir::train_args(out.string()) + " " + extra;
  }
  // Starts `command` in the background with its output in `log`; returns the pid of the gsoft
  // process itself.
  static pid_t start(const std::string& env, const std::string& command, const fs::path& log) {
    const std::string sh = env + " exec " + command + " > '" + log.string() + "' 2>&1 & echo $!";
    FILE* p = ::popen(sh.c_str(), "r");
    int pid = -1;
    if (p) {
      if (std::fscanf(p, "%d", &pid) != 1) pid = -1;
      ::pclose(p);
    }
    return pid;
  }
};

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// Waits until `pid` is gone; false after `seconds`.
bool wait_gone(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (!alive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::vector<double> losses(const fs::path& run, const char* type) {
  std::vector<double> out;
  for (const auto& line : read_jsonl(run / "metrics.jsonl"))
    if (line["type"] == type) out.push_back(line["loss"].get<double>());
  return out;
}

void expect_same_run(const fs::path& a, const fs::path& b, int64_t steps) {
  const auto la = losses(a, "train"), lb = losses(b, "train");
  ASSERT_EQ(la.size(), static_cast<size_t>(steps));
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(lb[i], la[i], 1e-4 * std::abs(la[i])) << "step " << i + 1;
  const auto ea = losses(a, "eval"), eb = losses(b, "eval");
  ASSERT_EQ(ea.size(), eb.size());
  ASSERT_FALSE(ea.empty());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_NEAR(eb[i], ea[i], 1e-4 * std::abs(ea[i])) << "eval " << i;
  const auto ta = gsoft::io::read_safetensors((a / "adapter" / "adapter_model.safetensors").string()).tensors;
  const auto tb = gsoft::io::read_safetensors((b / "adapter" / "adapter_model.safetensors").string()).tensors;
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [k, t] : ta) {
    ASSERT_TRUE(tb.count(k)) << k;
    // The attention key bias adds the same q.b to every score of a query, which softmax ignores:
    // its gradient is zero up to rounding, and AdamW turns that rounding into lr-sized steps that
    // differ with the summation order. It changes no output (the evaluation losses above agree).
    if (k.size() > 9 && k.compare(k.size() - 9, 9, ".key.bias") == 0) continue;
    EXPECT_LT(gsoft::test::max_abs_diff(tb.at(k), t), 1e-5) << k;
  }
}

class DataParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(DataParallel, TwoRanksGiveTheLossesAndAdapterOfOneProcess) {
  Fixture f("dist_same_" + GetParam());
  const std::string method = GetParam() == "full" ? "--method full" : "--method gsoft --block-size 8";
  const std::string opts = method + " --max-steps 30 --batch-size 16 --lr 5e-3 --dropout 0 --log-every 1 "
                                    "--eval-every 10 --seed 3";
  const fs::path one = f.dir / "one", two = f.dir / "two", env = f.dir / "env", log = f.dir / "log.txt";
  ASSERT_EQ(run_command(f.cli + " --threads 2 " + f.train_args(one, opts), log), 0) << read_text(log);
  ASSERT_EQ(run_command(f.cli + " " + f.train_args(two, opts + " --nproc 2"), log), 0) << read_text(log);
  const std::string out = read_text(log);
  EXPECT_NE(out.find("starting 2 workers"), std::string::npos) << out;
  const auto summary = gsoft::test::last_json_line(out);
  EXPECT_EQ(summary["world_size"], 2);
  EXPECT_GT(summary["all_reduce_bytes_per_step"].get<double>(), 0);
  expect_same_run(one, two, 30);

  // The same through torchrun's variables: two processes started separately, as on two hosts.
  const std::string vars = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port());
  const std::string cmd = f.cli + " --threads 1 " + f.train_args(env, opts);
  const pid_t r1 = Fixture::start(vars + " RANK=1", cmd, f.dir / "rank1.log");
  ASSERT_GT(r1, 0);
  ASSERT_EQ(run_command(vars + " RANK=0 " + cmd, log), 0) << read_text(log) << read_text(f.dir / "rank1.log");
  ASSERT_TRUE(wait_gone(r1, 30));
  expect_same_run(one, env, 30);
}

INSTANTIATE_TEST_SUITE_P(Methods, DataParallel, ::testing::Values("gsoft", "full"));

// LipConvNet: the global batch is augmented as one and then split, so two ranks train the network
// one process trains; the certification is sharded and gathered.
TEST(DataParallelLipConv, TwoRanksTrainAndCertifyAsOneProcess) {
  const fs::path dir = gsoft::test::scratch_dir("dist_lipconv");
  const std::string cli = GSOFT_CLI_PATH;
  const std::string args = " lipconv train --dataset fashion-mnist --conv gs-soc --groups 2,1 --depth 5 --init-channels 4 "
                           "--epochs 2 --train-subset 256 --test-subset 63 --batch-size 64 --no-resume --out ";
  const fs::path log = dir / "log.txt";
  ASSERT_EQ(run_command(cli + " --threads 2" + args + (dir / "one").string(), log), 0) << read_text(log);
  ASSERT_EQ(run_command(cli + args + (dir / "two").string() + " --nproc 2", log), 0) << read_text(log);
  const auto a = read_jsonl(dir / "one" / "metrics.jsonl"), b = read_jsonl(dir / "two" / "metrics.jsonl");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i]["train_loss"].get<double>(), a[i]["train_loss"].get<double>(), 1e-4 * a[i]["train_loss"].get<double>());
    EXPECT_EQ(b[i]["test_accuracy"], a[i]["test_accuracy"]) << i;
    EXPECT_NEAR(b[i]["mean_certificate"].get<double>(), a[i]["mean_certificate"].get<double>(),
                1e-4 * std::abs(a[i]["mean_certificate"].get<double>()));
  }
}

// Masked-LM pretraining: each step's masks are drawn for the whole global batch from a generator
// seeded by the step, so with --dropout 0 two ranks train the encoder one process trains, and the
// two ranks learn the same tokenizer.
TEST(DataParallelPretrain, TwoRanksPretrainTheEncoderOfOneProcess) {
  const fs::path dir = gsoft::test::scratch_dir("dist_pretrain");
  gsoft::test::write_sentiment_csv(dir / "corpus.csv", 300, 5);
  const std::string cli = GSOFT_CLI_PATH;
  const std::string args = " pretrain --corpus " + (dir / "corpus.csv").string() +
                           " --vocab-size 150 --hidden 16 --layers 1 --heads 2 --intermediate 32 --seq-len 16 "
                           "--max-steps 8 --batch-size 7 --dropout 0 --log-every 1 --no-resume --out ";
  const fs::path log = dir / "log.txt";
  ASSERT_EQ(run_command(cli + " --threads 2" + args + (dir / "one").string(), log), 0) << read_text(log);
  ASSERT_EQ(run_command(cli + args + (dir / "two").string() + " --nproc 2", log), 0) << read_text(log);
  EXPECT_EQ(read_text(dir / "two" / "tokenizer.json"), read_text(dir / "one" / "tokenizer.json"));
  const auto la = losses(dir / "one", "train"), lb = losses(dir / "two", "train");
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(lb[i], la[i], 1e-4 * la[i]) << "step " << i + 1;
  const auto ta = gsoft::io::read_safetensors((dir / "one" / "model.safetensors").string()).tensors;
  const auto tb = gsoft::io::read_safetensors((dir / "two" / "model.safetensors").string()).tensors;
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [k, t] : ta) EXPECT_LT(gsoft::test::max_abs_diff(tb.at(k), t), 1e-5) << k;
  const auto summary = nlohmann::json::parse(read_text(dir / "two" / "pretrain_summary.json"));
  EXPECT_EQ(summary["world_size"], 2);
  EXPECT_GT(summary["all_reduce_bytes_per_step"].get<double>(), 0);
}

// Diffusion pretraining: each step's scenes and noise are drawn as one batch and split, and the
// text encoder has no dropout, so two ranks train the pipeline one process trains.
TEST(DataParallelDiffusion, TwoRanksPretrainAsOneProcess) {
  const fs::path dir = gsoft::test::scratch_dir("dist_diffusion");
  const std::string cli = GSOFT_CLI_PATH;
  const std::string args = " diffusion pretrain --no-resume --channels 8,16 --groups 4 --heads 2 --attention-from 1 "
                           "--text-hidden 16 --text-heads 2 --text-layers 1 --max-steps 6 --batch-size 6 "
                           "--checkpoint-every 6 --sample-every 0 --log-every 1 --out ";
  const fs::path log = dir / "log.txt";
  ASSERT_EQ(run_command(cli + " --threads 2" + args + (dir / "one").string(), log), 0) << read_text(log);
  ASSERT_EQ(run_command(cli + args + (dir / "two").string() + " --nproc 2", log), 0) << read_text(log);
  const auto la = losses(dir / "one", "train"), lb = losses(dir / "two", "train");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(lb[i], la[i], 1e-4 * la[i]) << "step " << i + 1;
  const auto ta = gsoft::io::read_safetensors((dir / "one" / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").string());
  const auto tb = gsoft::io::read_safetensors((dir / "two" / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").string());
  ASSERT_EQ(ta.tensors.size(), tb.tensors.size());
  for (const auto& [k, t] : ta.tensors) EXPECT_LT(gsoft::test::max_abs_diff(tb.tensors.at(k), t), 1e-5) << k;
}

// DreamBooth with prior preservation on the shipped pipeline: each rank takes the same share of the
// instance and class rows, and LoRA's random A comes from the seed, so two ranks train the adapter
// one process trains from the same class images. Those are sampled in shares and gathered; a share
// is sampled in a smaller batch, whose rounding may move a pixel by a grey level. The adapters sit
// on the attention projections only: a convolution's weight gradient sums over every position in
// an order that depends on the batch split, and Adam's first steps turn that float noise in
// near-zero gradients into differences of up to 4e-5 in LoRA's A.
TEST(DataParallelDiffusion, TwoRanksDreamBoothAsOneProcess) {
  const fs::path dir = gsoft::test::scratch_dir("dist_dreambooth");
  const std::string cli = GSOFT_CLI_PATH;
  const std::string args = std::string(" diffusion dreambooth --model ") + GSOFT_SOURCE_DIR +
                           "/models/fashion-diffusion --subject-fmnist 0 --method lora --r 4 "
                           "--target-modules to_q,to_k,to_v,to_out.0 --batch-size 3 --num-class-images 5 --class-steps 2 --log-every 1 --no-resume";
  const std::string four = " --max-steps 4";
  const fs::path log = dir / "log.txt";
  const std::string classes1 = " --class-images-dir " + (dir / "classes1").string();
  ASSERT_EQ(run_command(cli + " --threads 2" + args + four + classes1 + " --out " + (dir / "one").string(), log), 0)
      << read_text(log);
  ASSERT_EQ(run_command(cli + args + " --class-images-dir " + (dir / "classes2").string() + " --out " +
                            (dir / "sampled").string() + " --max-steps 1 --nproc 2", log), 0) << read_text(log);
  for (int i = 0; i < 5; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%05d.png", i);
    const auto a = gsoft::io::read_png((dir / "classes1" / name).string());
    const auto b = gsoft::io::read_png((dir / "classes2" / name).string());
    ASSERT_EQ(a.pixels.size(), b.pixels.size());
    int worst = 0;
    for (size_t k = 0; k < a.pixels.size(); ++k) worst = std::max(worst, std::abs(int(a.pixels[k]) - int(b.pixels[k])));
    EXPECT_LE(worst, 2) << name;
  }
  ASSERT_EQ(run_command(cli + args + four + classes1 + " --out " + (dir / "two").string() + " --nproc 2", log), 0)
      << read_text(log);
  const auto la = losses(dir / "one", "train"), lb = losses(dir / "two", "train");
  ASSERT_EQ(la.size(), 4u);
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(lb[i], la[i], 1e-4 * la[i]) << "step " << i + 1;
  const auto ta = gsoft::io::read_safetensors((dir / "one" / "adapter" / "adapter_model.safetensors").string()).tensors;
  const auto tb = gsoft::io::read_safetensors((dir / "two" / "adapter" / "adapter_model.safetensors").string()).tensors;
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [k, t] : ta) EXPECT_LT(gsoft::test::max_abs_diff(tb.at(k), t), 1e-5) << k;
}

TEST(DataParallelFaults, AKilledWorkerStopsTheOtherAndTheCheckpointResumes) {
  Fixture f("dist_kill");
  const fs::path run = f.dir / "run";
  const std::string opts = "--method gsoft --block-size 8 --max-steps 100000 --batch-size 4 --checkpoint-every 5 "
                           "--eval-every 1000000 --log-every 50 --dist-timeout 30";
  const std::string vars = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port());
  const std::string cmd = f.cli + " --threads 1 " + f.train_args(run, opts);
  const pid_t r0 = Fixture::start(vars + " RANK=0", cmd, f.dir / "rank0.log");
  const pid_t r1 = Fixture::start(vars + " RANK=1", cmd, f.dir / "rank1.log");
  ASSERT_GT(r0, 0);
  ASSERT_GT(r1, 0);
  const fs::path ckpt = run / "checkpoint.safetensors";
  for (int i = 0; i < 600 && !fs::exists(ckpt); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(ckpt)) << read_text(f.dir / "rank0.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(r1, SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  const bool stopped = wait_gone(r0, 60);
  if (!stopped) ::kill(r0, SIGKILL);
  ASSERT_TRUE(stopped) << "rank 0 still runs 60 s after rank 1 was killed";
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string log0 = read_text(f.dir / "rank0.log");
  EXPECT_NE(log0.find("error: rank 0:"), std::string::npos) << log0;
  // The survivor names the rank that is gone (the process ids were exchanged at start-up).
  EXPECT_NE(log0.find("rank 1 (pid " + std::to_string(r1) + ") is no longer running"), std::string::npos) << log0;
  EXPECT_LT(took, 60);
  // The last checkpoint is whole, and a run with another rank count resumes from it.
  const auto state = gsoft::io::read_safetensors(ckpt.string());
  const int64_t step = std::stoll(state.metadata.at("step"));
  EXPECT_GT(step, 0);
  const fs::path log = f.dir / "resume.log";
  EXPECT_EQ(run_command("timeout --preserve-status -s INT 6 " + f.cli + " --threads 2 " + f.train_args(run, opts), log),
            130) << read_text(log);
  EXPECT_NE(read_text(log).find("resumed from step "), std::string::npos) << read_text(log);
}

TEST(DataParallelFaults, PortInUseAndMismatchedOptionsAreClearErrors) {
  Fixture f("dist_errors");
  const std::string opts = "--method gsoft --block-size 8 --max-steps 4 --batch-size 8 --dist-timeout 20";
  // A port someone else listens on.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ::listen(fd, 1);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int busy = ntohs(a.sin_port);
  const fs::path log = f.dir / "log.txt";
  EXPECT_NE(run_command(f.cli + " " + f.train_args(f.dir / "busy", opts + " --nproc 2 --master-port " + std::to_string(busy)),
                        log), 0);
  EXPECT_NE(read_text(log).find("master port 127.0.0.1:" + std::to_string(busy) + " is already in use"),
            std::string::npos) << read_text(log);
  ::close(fd);

  // Rank 1 with another learning rate.
  const std::string vars = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port());
  const fs::path out = f.dir / "mismatch";
  const pid_t r1 = Fixture::start(vars + " RANK=1", f.cli + " --threads 1 " + f.train_args(out, opts + " --lr 1e-3"),
                                  f.dir / "rank1.log");
  EXPECT_NE(run_command(vars + " RANK=0 " + f.cli + " --threads 1 " + f.train_args(out, opts + " --lr 2e-3"), log), 0);
  const std::string text = read_text(log);
  EXPECT_NE(text.find("rank 1 has different training options from rank 0"), std::string::npos) << text;
  EXPECT_NE(text.find("\"lr\":0.001"), std::string::npos) << text;
  EXPECT_TRUE(wait_gone(r1, 30));
}

}  // namespace
#endif
