// The adapter directory format, loading into models, merging into plain checkpoints, and the
// merge / adapter-info commands.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "adapters/method_cases.h"
#include "gsoft/adapters/adaptable_conv2d.h"
#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/checkpoint.h"
#include "gsoft/io/safetensors.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::kIn;
using gsoft::test::kOut;
using gsoft::test::max_abs_diff;
using gsoft::test::MethodCase;
namespace fs = std::filesystem;

namespace {

struct Net : torch::nn::Module {
  Net() {
    layer = register_module("layer", AdaptableLinear(kIn, kOut));
    head = register_module("head", AdaptableLinear(kOut, 3));
  }
  AdaptableLinear layer{nullptr}, head{nullptr};
  torch::Tensor forward(const torch::Tensor& x) { return head(layer(x)); }
};

fs::path scratch(const std::string& name) { return gsoft::test::scratch_dir("adapter_io_" + name); }

void copy_weights(Net& from, Net& to) {
  torch::NoGradGuard g;
  auto src = from.named_parameters();
  for (auto& p : to.named_parameters())
    if (src.contains(p.key())) p.value().copy_(src[p.key()]);
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

class AdapterFormat : public ::testing::TestWithParam<MethodCase> {};

TEST_P(AdapterFormat, ConfigRoundTrips) {
  auto c = GetParam().config;
  c.modules_to_save = {"head"};
  auto back = io::adapter_config_from_json(io::adapter_config_to_json(c));
  EXPECT_EQ(io::adapter_config_to_json(back), io::adapter_config_to_json(c));
  EXPECT_EQ(back.method, c.method);
  EXPECT_EQ(back.target_modules, c.target_modules);
  EXPECT_EQ(back.modules_to_save, c.modules_to_save);
}

TEST_P(AdapterFormat, SaveLoadReproducesTheModel) {
  auto dir = scratch("rt_" + GetParam().name);
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  cfg.modules_to_save = {"head"};
  Net a;
  inject_adapters(a, cfg);
  {
    torch::NoGradGuard g;
    a.head->weight.add_(1.0);  // a trained head
  }
  io::save_adapter(dir.string(), a, cfg);
  auto file = io::read_safetensors((dir / io::kAdapterModelFile).string());
  EXPECT_EQ(file.metadata.at("format"), "pt");
  for (const auto& n : adapter_tensor_names(cfg)) EXPECT_TRUE(file.tensors.count("base_model.model.layer." + n)) << n;
  EXPECT_TRUE(file.tensors.count("base_model.model.head.weight"));
  Net b;
  copy_weights(a, b);
  {
    torch::NoGradGuard g;
    b.head->weight.sub_(1.0);  // the base head; the adapter file restores the trained one
  }
  io::load_adapter(dir.string(), b);
  auto x = torch::randn({4, kIn});
  EXPECT_LT(max_abs_diff(b.forward(x), a.forward(x)), 1e-6);
  fs::remove_all(dir);
}

TEST_P(AdapterFormat, MergeCheckpointWithoutModel) {
  auto dir = scratch("merge_" + GetParam().name);
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  Net a;
  std::map<std::string, torch::Tensor> base;
  for (const auto& p : a.named_parameters()) base[p.key()] = p.value().detach().clone();
  base["layer.weight"] = base["layer.weight"].to(torch::kHalf);  // dtype is kept
  {
    torch::NoGradGuard g;
    a.layer->weight.copy_(base["layer.weight"].to(torch::kFloat32));
  }
  inject_adapters(a, cfg);
  io::save_adapter(dir.string(), a, cfg);
  auto merged = io::merge_checkpoint(base, io::read_adapter(dir.string()));
  EXPECT_EQ(merged.at("layer.weight").scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(merged.at("head.weight"), base.at("head.weight")));
  EXPECT_TRUE(torch::equal(merged.at("layer.bias"), base.at("layer.bias")));
  a.layer->merge();
  EXPECT_LT(max_abs_diff(merged.at("layer.weight"), a.layer->weight), 2e-3);  // fp16 rounding
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Cases, AdapterFormat, ::testing::ValuesIn(gsoft::test::method_cases()),
                         [](const auto& info) { return info.param.name; });

// An OFT adapter as PEFT writes it (use_cayley_neumann absent: PEFT's default, true) loads and
// behaves as the same tensor attached directly (checked against PEFT's formula in
// OFTAdapter.MatchesPEFTFormulas).
TEST(AdapterFormatPEFT, OFTFileAsPEFTWritesIt) {
  auto dir = scratch("peft_oft");
  {
    std::ofstream f(dir / "adapter_config.json");
    f << R"({"peft_type":"OFT","r":0,"oft_block_size":8,"block_share":false,"coft":false,"eps":6e-05,
             "module_dropout":0.0,"target_modules":["layer"],"bias":"none","init_weights":true,
             "peft_version":"0.18.0","task_type":null})";
  }
  auto vec = 0.2 * torch::randn({kIn / 8, 28});
  io::write_safetensors((dir / "adapter_model.safetensors").string(), {{"base_model.model.layer.oft_R.weight", vec}},
                        {{"format", "pt"}});
  Net a, b;
  copy_weights(a, b);
  io::load_adapter(dir.string(), a);
  auto c = gsoft::test::make_config(Method::OFT);
  c.block_size = 8;
  b.layer->attach(make_linear_adapter(c, kIn, kOut));
  {
    torch::NoGradGuard g;
    b.layer->adapter()->named_parameters()[0].second.copy_(vec);
  }
  auto x = torch::randn({3, kIn});
  EXPECT_LT(max_abs_diff(a.forward(x), b.forward(x)), 1e-6);
  fs::remove_all(dir);
}

TEST(AdapterFormatPEFT, DefaultsOfMissingFields) {
  auto lora = io::adapter_config_from_json(R"({"peft_type":"LORA","target_modules":["q_proj","v_proj"]})");
  EXPECT_EQ(lora.method, Method::LoRA);
  EXPECT_EQ(lora.r, 8);
  EXPECT_EQ(lora.lora_alpha, 8.0);
  auto gs = io::adapter_config_from_json(R"({"peft_type":"GSOFT","target_modules":"model\\..*\\.query"})");
  EXPECT_EQ(gs.block_size, 8);
  EXPECT_EQ(gs.parametrization, Parametrization::Cayley);
  EXPECT_EQ(gs.layout, Layout::Official);
  EXPECT_TRUE(gs.scale);
  EXPECT_EQ(gs.target_regex, "model\\..*\\.query");
  auto boft = io::adapter_config_from_json(R"({"peft_type":"BOFT","target_modules":["q"]})");
  EXPECT_EQ(boft.block_size, 4);
  EXPECT_EQ(boft.boft_n_butterfly_factor, 1);
  auto oft = io::adapter_config_from_json(R"({"peft_type":"OFT","r":4,"oft_block_size":0,"target_modules":["q"]})");
  EXPECT_EQ(oft.nblocks, 4);
  EXPECT_TRUE(oft.use_cayley_neumann);
}

TEST(AdapterFormatPEFT, ClearErrors) {
  auto expect_error = [](const std::string& json, const std::string& needle) {
    try {
      io::adapter_config_from_json(json, "cfg.json");
      ADD_FAILURE() << "expected an error for " << json;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  };
  expect_error("{", "not valid JSON");
  expect_error(R"({"peft_type":"IA3","target_modules":["q"]})", "unknown peft_type 'IA3'");
  expect_error(R"({"peft_type":"OFT","r":8,"target_modules":["q"]})", "before PEFT 0.14");
  expect_error(R"({"peft_type":"LORA","r":"eight","target_modules":["q"]})", "field 'r' has the wrong type");
  expect_error(R"({"peft_type":"LORA","use_dora":true,"target_modules":["q"]})", "use_dora");
  expect_error(R"({"peft_type":"GSOFT","layout":"offical","target_modules":["q"]})", "unknown GS layout 'offical'");
  expect_error(R"({"peft_type":"GSOFT","target_modules":[]})", "no targets");
  expect_error(R"({"peft_type":"GSOFT","target_modules":)" + std::string(200000, '['), "nests deeper than 64");
}

TEST(AdapterFormatPEFT, LoadValidatesShapesAndModules) {
  auto dir = scratch("bad_shapes");
  auto c = gsoft::test::make_config(Method::GSOFT);
  c.block_size = 4;
  io::write_file_atomic((dir / "adapter_config.json").string(), io::adapter_config_to_json(c));
  auto write = [&](std::map<std::string, torch::Tensor> t) {
    io::write_safetensors((dir / "adapter_model.safetensors").string(), t, {{"format", "pt"}});
  };
  write({{"base_model.model.layer.gsoft_L", torch::zeros({8, 4, 4})},
         {"base_model.model.layer.gsoft_R", torch::zeros({4, 8, 8})},
         {"base_model.model.layer.gsoft_s", torch::ones({kOut})}});
  auto expect_load_error = [&](const std::string& needle) {
    Net n;
    try {
      io::load_adapter(dir.string(), n);
      ADD_FAILURE() << "expected " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_load_error("expected shape [8, 4, 4] for 'base_model.model.layer.gsoft_R' in ");
  write({{"base_model.model.layer.gsoft_L", torch::zeros({8, 4, 4})}, {"base_model.model.layer.gsoft_s", torch::ones({kOut})}});
  expect_load_error("module 'layer' lacks tensor 'base_model.model.layer.gsoft_R'");
  write({{"base_model.model.other.gsoft_L", torch::zeros({8, 4, 4})},
         {"base_model.model.other.gsoft_R", torch::zeros({8, 4, 4})},
         {"base_model.model.other.gsoft_s", torch::ones({kOut})}});
  expect_load_error("has tensors for module 'other', which the model does not adapt");
  write({{"base_model.model.layer.oft_r", torch::zeros({4, 8, 8})}});
  expect_load_error("PEFT's OFT format before 0.16");
  fs::remove_all(dir);
}

TEST(Checkpoint, ReadsFileDirectoryAndShards) {
  auto dir = scratch("ckpt");
  std::map<std::string, torch::Tensor> a{{"x.weight", torch::randn({2, 3})}}, b{{"y.weight", torch::randn({4})}};
  io::write_safetensors((dir / "model-00001-of-00002.safetensors").string(), a);
  io::write_safetensors((dir / "model-00002-of-00002.safetensors").string(), b);
  io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                        R"({"metadata":{},"weight_map":{"x.weight":"model-00001-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors"}})");
  auto f = io::read_checkpoint(dir.string());
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(f.tensors.at("y.weight"), b.at("y.weight")));
  io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                        R"({"weight_map":{"x.weight":"model-00001-of-00002.safetensors","z":"model-00002-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors"}})");
  try {
    io::read_checkpoint(dir.string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("names 'z' in model-00002-of-00002.safetensors, which has no such tensor"), std::string::npos) << e.what();
  }
  auto empty = scratch("ckpt_empty");
  EXPECT_THROW(io::read_checkpoint(empty.string()), std::runtime_error);
  fs::remove_all(dir);
  fs::remove_all(empty);
}

#ifdef GSOFT_CLI_PATH
// The command line: gsoft merge and gsoft adapter info on files written here.
TEST(MergeCommand, MergesAndReportsErrors) {
  auto dir = scratch("cli");
  auto cfg = gsoft::test::make_config(Method::GSOFT);
  cfg.block_size = 8;
  cfg.init_weights = false;
  Net a;
  std::map<std::string, torch::Tensor> base;
  for (const auto& p : a.named_parameters()) base[p.key()] = p.value().detach().clone();
  io::write_safetensors((dir / "base.safetensors").string(), base);
  inject_adapters(a, cfg);
  io::save_adapter((dir / "adapter").string(), a, cfg);
  const std::string cli = GSOFT_CLI_PATH;
  const auto out = dir / "merged.safetensors";
  auto run = [&](const std::string& args) {
    const std::string cmd = cli + " " + args + " > " + (dir / "log.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  ASSERT_EQ(run("merge --base " + (dir / "base.safetensors").string() + " --adapter " + (dir / "adapter").string() +
                " --out " + out.string()), 0) << read(dir / "log.txt");
  EXPECT_NE(read(dir / "log.txt").find("merged 1 modules"), std::string::npos) << read(dir / "log.txt");
  a.layer->merge();
  auto merged = io::read_safetensors(out.string());
  EXPECT_LT(max_abs_diff(merged.tensors.at("layer.weight"), a.layer->weight), 1e-5);
  EXPECT_TRUE(torch::equal(merged.tensors.at("head.weight"), base.at("head.weight")));

  ASSERT_EQ(run("adapter info " + (dir / "adapter").string()), 0);
  EXPECT_NE(read(dir / "log.txt").find("adapter parameters " + std::to_string(2 * kIn * 8 + kOut)), std::string::npos)
      << read(dir / "log.txt");

  // A module missing from the base is named, and the old output survives.
  base.erase("layer.weight");
  io::write_safetensors((dir / "base.safetensors").string(), base);
  const auto before = read(out);
  EXPECT_EQ(run("merge --base " + (dir / "base.safetensors").string() + " --adapter " + (dir / "adapter").string() +
                " --out " + out.string()), 1);
  EXPECT_NE(read(dir / "log.txt").find("module 'layer' named by the adapter is missing from the base checkpoint"),
            std::string::npos) << read(dir / "log.txt");
  EXPECT_EQ(read(out), before);
  EXPECT_EQ(run("merge --adapter " + (dir / "adapter").string()), 2);  // missing required flags
  fs::remove_all(dir);
}
#endif

// A checkpoint directory merges into a complete directory: weights plus the other files.
TEST(MergeTo, WritesACompleteCheckpointDirectory) {
  auto dir = scratch("merge_dir");
  auto cfg = gsoft::test::make_config(Method::LoRA);
  cfg.init_weights = false;
  Net a;
  std::map<std::string, torch::Tensor> base;
  for (const auto& p : a.named_parameters()) base[p.key()] = p.value().detach().clone();
  fs::create_directories(dir / "base");
  io::write_safetensors((dir / "base" / "model.safetensors").string(), base);
  io::write_file_atomic((dir / "base" / "config.json").string(), R"({"model_type":"bert"})");
  io::write_file_atomic((dir / "base" / "tokenizer.json").string(), R"({"version":"1.0"})");
  inject_adapters(a, cfg);
  io::save_adapter((dir / "adapter").string(), a, cfg);
  auto report = io::merge_to((dir / "base").string(), (dir / "adapter").string(), (dir / "out").string());
  EXPECT_EQ(report.merged_modules, std::vector<std::string>{"layer"});
  EXPECT_EQ(read(dir / "out" / "config.json"), R"({"model_type":"bert"})");
  EXPECT_EQ(read(dir / "out" / "tokenizer.json"), R"({"version":"1.0"})");
  a.layer->merge();
  auto merged = io::read_checkpoint((dir / "out").string());
  EXPECT_LT(max_abs_diff(merged.tensors.at("layer.weight"), a.layer->weight), 1e-5);
  fs::remove_all(dir);
}

// Conv LoRA is stored in PEFT's conv shapes and loads and merges back from them.
TEST(AdapterFormatPEFT, ConvLoRAUsesPEFTShapes) {
  auto dir = scratch("conv_lora");
  struct ConvNet : torch::nn::Module {
    ConvNet() { layer = register_module("layer", AdaptableConv2d(torch::nn::Conv2dOptions(3, 5, {2, 3}).padding(1))); }
    AdaptableConv2d layer{nullptr};
  };
  auto cfg = gsoft::test::make_config(Method::LoRA);
  cfg.r = 4;
  cfg.init_weights = false;
  ConvNet a, b;
  {
    torch::NoGradGuard g;
    b.layer->weight.copy_(a.layer->weight);
    b.layer->bias.copy_(a.layer->bias);
  }
  std::map<std::string, torch::Tensor> base{{"layer.weight", a.layer->weight.detach().clone()},
                                            {"layer.bias", a.layer->bias.detach().clone()}};
  inject_adapters(a, cfg);
  io::save_adapter(dir.string(), a, cfg);
  auto file = io::read_safetensors((dir / io::kAdapterModelFile).string());
  EXPECT_EQ(file.tensors.at("base_model.model.layer.lora_A.weight").sizes(), (std::vector<int64_t>{4, 3, 2, 3}));
  EXPECT_EQ(file.tensors.at("base_model.model.layer.lora_B.weight").sizes(), (std::vector<int64_t>{5, 4, 1, 1}));
  io::load_adapter(dir.string(), b);
  auto x = torch::randn({2, 3, 6, 7});
  EXPECT_LT(max_abs_diff(b.layer(x), a.layer(x)), 1e-5);
  auto merged = io::merge_checkpoint(base, io::read_adapter(dir.string()));
  a.layer->merge();
  EXPECT_LT(max_abs_diff(merged.at("layer.weight"), a.layer->weight), 1e-5);
  fs::remove_all(dir);
}
