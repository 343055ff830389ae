// Injection into a RoBERTa-base-shaped module tree (random weights), checked against the
// trainable-parameter counts of the paper's Table 1.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/adapters/inject.h"

using namespace gsoft;

namespace {

std::shared_ptr<torch::nn::Module> node() { return std::make_shared<torch::nn::Module>(); }

// encoder.layer.<i>.{attention.{self.{query,key,value}, output.{dense,LayerNorm}},
// intermediate.dense, output.{dense,LayerNorm}}, pooler.dense, classifier.{dense,out_proj}.
std::shared_ptr<torch::nn::Module> roberta_base_tree(int64_t layers = 12, int64_t h = 768, int64_t ff = 3072) {
  auto root = node();
  auto encoder = root->register_module("encoder", node());
  auto layer_list = encoder->register_module("layer", node());
  for (int64_t i = 0; i < layers; ++i) {
    auto layer = layer_list->register_module(std::to_string(i), node());
    auto attention = layer->register_module("attention", node());
    auto self = attention->register_module("self", node());
    for (const char* n : {"query", "key", "value"}) self->register_module(n, AdaptableLinear(h, h));
    auto attn_out = attention->register_module("output", node());
    attn_out->register_module("dense", AdaptableLinear(h, h));
    attn_out->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({h})));
    layer->register_module("intermediate", node())->register_module("dense", AdaptableLinear(h, ff));
    auto out = layer->register_module("output", node());
    out->register_module("dense", AdaptableLinear(ff, h));
    out->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({h})));
  }
  root->register_module("pooler", node())->register_module("dense", AdaptableLinear(h, h));
  auto classifier = root->register_module("classifier", node());
  classifier->register_module("dense", AdaptableLinear(h, h));
  classifier->register_module("out_proj", AdaptableLinear(h, 2));
  return root;
}

AdapterConfig paper_config(Method m) {
  AdapterConfig c;
  c.method = m;
  // PEFT suffix matching: "output.dense" also adapts attention.output.dense.
  c.target_modules = {"query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"};
  return c;
}

}  // namespace

class RobertaCounts : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { torch::manual_seed(0); }
};

TEST_F(RobertaCounts, PaperTable1) {
  {
    auto c = paper_config(Method::GSOFT);
    c.block_size = 8;
    auto root = roberta_base_tree();
    auto r = inject_adapters(*root, c);
    EXPECT_EQ(r.adapted.size(), 72u);
    EXPECT_EQ(r.adapter_params, 1410048);
    EXPECT_EQ(r.trainable_params, 1410048);
  }
  {
    auto c = paper_config(Method::GSOFT);
    c.block_size = 8;
    c.target_modules.push_back("pooler.dense");  // the authors' code also wraps the pooler: 1.42M
    auto root = roberta_base_tree();
    EXPECT_EQ(inject_adapters(*root, c).adapter_params, 1423104);
  }
  {
    auto c = paper_config(Method::LoRA);
    c.r = 8;
    auto root = roberta_base_tree();
    EXPECT_EQ(inject_adapters(*root, c).adapter_params, 1327104);
  }
  {
    auto c = paper_config(Method::BOFT);  // the paper's "OFT" row: PEFT BOFT, one factor, b = 16
    c.block_size = 16;
    auto root = roberta_base_tree();
    EXPECT_EQ(inject_adapters(*root, c).adapter_params, 1410048);
  }
  {
    auto c = paper_config(Method::OFT);  // PEFT's OFT format: upper triangles, no scale
    c.block_size = 16;
    auto root = roberta_base_tree();
    EXPECT_EQ(inject_adapters(*root, c).adapter_params, 622080);
  }
}

TEST_F(RobertaCounts, FreezesAllButAdaptersAndModulesToSave) {
  auto c = paper_config(Method::GSOFT);
  c.block_size = 8;
  c.modules_to_save = {"classifier"};
  auto root = roberta_base_tree(2, 64, 128);
  auto r = inject_adapters(*root, c);
  EXPECT_EQ(r.saved_modules, std::vector<std::string>{"classifier"});
  const int64_t classifier = 64 * 64 + 64 + 64 * 2 + 2;
  EXPECT_EQ(r.trainable_params, r.adapter_params + classifier);
  for (const auto& p : root->named_parameters()) {
    const bool adapter = p.key().find(".gsoft_") != std::string::npos;
    const bool saved = p.key().rfind("classifier.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), adapter || saved) << p.key();
  }
  EXPECT_NE(r.to_string().find("encoder.layer.1.output.dense"), std::string::npos);
}

TEST_F(RobertaCounts, RegexTargetsAndExclusions) {
  AdapterConfig c;
  c.method = Method::LoRA;
  c.target_regex = R"(encoder\.layer\.\d+\.attention\.self\.(query|value))";
  auto root = roberta_base_tree(3, 32, 64);
  auto r = inject_adapters(*root, c);
  ASSERT_EQ(r.adapted.size(), 6u);
  EXPECT_EQ(r.adapted[0].name, "encoder.layer.0.attention.self.query");
  AdapterConfig e = paper_config(Method::LoRA);
  e.exclude_modules = {"attention.output.dense"};
  auto root2 = roberta_base_tree(2, 32, 64);
  EXPECT_EQ(inject_adapters(*root2, e).adapted.size(), 2u * 5);
}

TEST_F(RobertaCounts, ErrorsNameTheModule) {
  auto c = paper_config(Method::GSOFT);
  c.block_size = 8;
  c.target_modules = {"nothing_like_this"};
  auto root = roberta_base_tree(1, 32, 64);
  try {
    inject_adapters(*root, c);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no module matched the targets (nothing_like_this)"), std::string::npos) << e.what();
  }
  c.target_modules = {"LayerNorm"};
  try {
    inject_adapters(*root, c);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("target 'encoder.layer.0.attention.output.LayerNorm' is a torch::nn::LayerNorm"),
              std::string::npos) << e.what();
  }
}

TEST_F(RobertaCounts, FullFineTuningTrainsEverything) {
  AdapterConfig c;
  c.method = Method::Full;
  auto root = roberta_base_tree(1, 32, 64);
  auto r = inject_adapters(*root, c);
  EXPECT_TRUE(r.adapted.empty());
  EXPECT_EQ(r.trainable_params, r.total_params);
}

TEST(NameMatching, SuffixOnDotBoundaries) {
  EXPECT_TRUE(name_matches_suffix("a.output.dense", "output.dense"));
  EXPECT_TRUE(name_matches_suffix("output.dense", "output.dense"));
  EXPECT_FALSE(name_matches_suffix("a.xoutput.dense", "output.dense"));
  EXPECT_FALSE(name_matches_suffix("a.output.dense.x", "output.dense"));
}
