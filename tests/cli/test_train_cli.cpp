// gsoft train / eval / predict / merge end to end on a tiny BERT written here: the adapter learns,
// the merged directory predicts what the adapted model predicts, --config works, and an interrupt
// saves a checkpoint that the next run resumes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gsoft/models/classifier.h"
#include "gsoft/train/batching.h"
#include "support/cli_output.h"
#include "support/helpers.h"
#include "support/tiny_model.h"

#ifdef GSOFT_CLI_PATH
namespace {

namespace fs = std::filesystem;
using gsoft::test::read_text;
using gsoft::test::run_command;

struct Fixture : gsoft::test::TinyTrainDir {
  fs::path log;
  std::string cli = GSOFT_CLI_PATH;
  explicit Fixture(const std::string& name) : TinyTrainDir(name, 240, 80), log(dir / "log.txt") {}
  int run(const std::string& args) { return run_command(cli + " --threads 2 " + args, log); }
  std::string output() const { return read_text(log); }
};

using gsoft::test::last_json_line;
using gsoft::test::read_jsonl;

TEST(TrainCommand, TrainsPredictsMergesAndAgrees) {
  Fixture f("cli_train");
  const fs::path run = f.dir / "run";
  ASSERT_EQ(f.run(f.train_args(run.string()) + " --method gsoft --block-size 8 --epochs 10 --batch-size 16 --lr 2e-2 "
                                              "--log-every 5"), 0) << f.output();
  const std::string out = f.output();
  EXPECT_NE(out.find("step 5/150 | epoch 1/10 | loss"), std::string::npos) << out;
  EXPECT_NE(out.find("ETA"), std::string::npos);
  const nlohmann::json summary = last_json_line(out);
  EXPECT_EQ(summary["method"], "gsoft");
  EXPECT_GE(summary["best"]["metrics"]["accuracy"].get<double>(), 0.8) << out;
  for (const char* p : {"adapter/adapter_model.safetensors", "adapter/config.json", "best/adapter_config.json",
                        "best/config.json", "metrics.jsonl", "run_config.json", "summary.json", "checkpoint.safetensors"})
    EXPECT_TRUE(fs::exists(run / p)) << p;
  const auto resolved = nlohmann::json::parse(read_text(run / "run_config.json"));
  EXPECT_EQ(resolved["block-size"], 8);
  EXPECT_EQ(resolved["method"], "gsoft");

  // Predictions of base + adapter, in input order, with label names.
  const fs::path input = f.dir / "input.jsonl";
  gsoft::test::write_text(input, "{\"text\":\"a very good film.\"}\n{\"text\":\"the plot was awful\"}\n"
                                 "{\"text\":\"boring and long\"}\n{\"text\":\"great fun\"}\n");
  ASSERT_EQ(f.run("predict --model " + f.model.string() + " --adapter " + (run / "best").string() + " --input " +
                  input.string() + " --out " + (f.dir / "a.jsonl").string()), 0) << f.output();
  const auto adapted = read_jsonl(f.dir / "a.jsonl");
  ASSERT_EQ(adapted.size(), 4u);
  EXPECT_EQ(adapted[0]["label"], "pos");
  EXPECT_EQ(adapted[1]["label"], "neg");
  EXPECT_EQ(adapted[2]["label"], "neg");
  EXPECT_EQ(adapted[3]["label"], "pos");

  // The merged directory is a plain checkpoint that predicts the same.
  ASSERT_EQ(f.run("merge --base " + f.model.string() + " --adapter " + (run / "best").string() + " --out " +
                  (f.dir / "merged").string()), 0) << f.output();
  ASSERT_EQ(f.run("predict --model " + (f.dir / "merged").string() + " --input " + input.string() + " --out " +
                  (f.dir / "m.jsonl").string()), 0) << f.output();
  const auto merged = read_jsonl(f.dir / "m.jsonl");
  ASSERT_EQ(merged.size(), adapted.size());
  for (size_t i = 0; i < merged.size(); ++i) {
    EXPECT_EQ(merged[i]["label"], adapted[i]["label"]);
    for (size_t k = 0; k < 2; ++k)
      EXPECT_NEAR(merged[i]["logits"][k].get<double>(), adapted[i]["logits"][k].get<double>(), 1e-3);
  }

  // eval reproduces the best evaluation.
  ASSERT_EQ(f.run("eval --model " + f.model.string() + " --adapter " + (run / "best").string() + " --eval-file " +
                  f.dev.string()), 0) << f.output();
  EXPECT_NEAR(last_json_line(f.output())["accuracy"].get<double>(), summary["best"]["metrics"]["accuracy"].get<double>(),
              1e-9);
}

TEST(PredictCommand, PlainCheckpointInInputOrder) {
  Fixture f("cli_predict");
  ASSERT_EQ(f.run("predict --model " + f.model.string() + " --input " + f.dev.string() + " --out " +
                  (f.dir / "p.jsonl").string()), 0) << f.output();
  const auto lines = read_jsonl(f.dir / "p.jsonl");
  ASSERT_EQ(lines.size(), 80u);
  // The same logits in process, example by example.
  auto clf = gsoft::load_classifier(f.model.string());
  const auto d = gsoft::data::read_table(f.dev.string(), [] {
    gsoft::data::TableFormat t;
    t.labelled = false;
    return t;
  }());
  const auto enc = gsoft::encode_dataset(*clf.tokenizer, d, 64);
  for (size_t i = 0; i < lines.size(); i += 7) {
    const auto logits = gsoft::predict_logits(*clf.model, {enc[i]}, 1, {0, false, true});
    EXPECT_NEAR(lines[i]["logits"][1].get<double>(), logits[0][1].item<double>(), 1e-4) << "row " << i;
    EXPECT_EQ(lines[i]["label"], logits[0][1].item<double>() > logits[0][0].item<double>() ? "LABEL_1" : "LABEL_0");
  }
}

TEST(TrainCommand, ConfigFileAndErrors) {
  Fixture f("cli_config");
  const fs::path cfg = f.dir / "run.json";
  gsoft::test::write_text(cfg, nlohmann::json({{"model", f.model.string()}, {"train_file", f.train.string()},
                                               {"method", "lora"}, {"r", 4}, {"max-steps", 3}, {"batch-size", 8},
                                               {"out", (f.dir / "run").string()}}).dump());
  ASSERT_EQ(f.run("train --config " + cfg.string() + " --lr 3e-3"), 0) << f.output();
  auto resolved = nlohmann::json::parse(read_text(f.dir / "run" / "run_config.json"));
  EXPECT_EQ(resolved["method"], "lora");
  EXPECT_EQ(resolved["r"], 4);
  EXPECT_DOUBLE_EQ(resolved["lr"].get<double>(), 3e-3);
  // The resolved config runs again as a config.
  ASSERT_EQ(f.run("train --config " + (f.dir / "run" / "run_config.json").string() + " --no-resume"), 0) << f.output();

  gsoft::test::write_text(cfg, nlohmann::json({{"model", f.model.string()}, {"out", (f.dir / "r1").string()}, {"no-such-option", 1}}).dump());
  EXPECT_EQ(f.run("train --config " + cfg.string()), 2);
  EXPECT_NE(f.output().find("no-such-option"), std::string::npos) << f.output();
  EXPECT_EQ(f.run(f.train_args((f.dir / "r2").string()) + " --method nope"), 2);
  EXPECT_NE(f.output().find("nope"), std::string::npos) << f.output();
  gsoft::test::write_text(f.dir / "bad.csv", "text,label\n\"fine\",pos\nno label column here\n");
  EXPECT_EQ(f.run("train --model " + f.model.string() + " --train-file " + (f.dir / "bad.csv").string() + " --out " +
                  (f.dir / "r3").string()), 1);
  EXPECT_NE(f.output().find("bad.csv:3: expected 2 columns, found 1"), std::string::npos) << f.output();
}

TEST(TrainCommand, InterruptSavesAndTheNextRunResumes) {
  Fixture f("cli_interrupt");
  const std::string args = f.train_args((f.dir / "run").string()) +
                           " --max-steps 200000 --batch-size 4 --checkpoint-every 1000000 --eval-every 1000000 --log-every 50";
  const int rc = run_command("timeout --preserve-status -s INT 4 " + f.cli + " --threads 1 " + args, f.log);
  ASSERT_EQ(rc, 130) << f.output();
  EXPECT_NE(f.output().find("interrupted at step"), std::string::npos) << f.output();
  const auto ckpt = gsoft::io::read_safetensors((f.dir / "run" / "checkpoint.safetensors").string());
  const int64_t step = std::stoll(ckpt.metadata.at("step"));
  EXPECT_GT(step, 0);
  ASSERT_EQ(run_command("timeout --preserve-status -s TERM 3 " + f.cli + " --threads 1 " + args, f.log), 130) << f.output();
  EXPECT_NE(f.output().find("resumed from step " + std::to_string(step) + " of 200000"), std::string::npos) << f.output();
}

}  // namespace
#endif
