// Tiny random BERT and RoBERTa checkpoints in Hugging Face layout, written here, loaded through
// the real loading path, and compared with an independent dense reference built from the config
// with explicit matmuls.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "gsoft/adapters/inject.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::max_abs_diff;
namespace fs = std::filesystem;
using Tensors = std::map<std::string, torch::Tensor>;

namespace {

constexpr int64_t V = 40, H = 16, NH = 4, FF = 24, NL = 2, P = 24, LABELS = 3;

std::string config_json(const std::string& type, const std::string& act) {
  std::ostringstream os;
  os << R"({"model_type":")" << type << R"(","vocab_size":)" << V << R"(,"hidden_size":)" << H
     << R"(,"num_hidden_layers":)" << NL << R"(,"num_attention_heads":)" << NH << R"(,"intermediate_size":)" << FF
     << R"(,"hidden_act":")" << act << R"(","max_position_embeddings":)" << P << R"(,"type_vocab_size":)"
     << (type == "roberta" ? 1 : 2) << R"(,"layer_norm_eps":1e-5,"pad_token_id":)" << (type == "roberta" ? 1 : 0)
     << R"(,"id2label":{"0":"a","1":"b","2":"c"},"architectures":["X"]})";
  return os.str();
}

// Random tensors with Hugging Face names for <prefix>.* plus the sequence-classification head.
Tensors random_checkpoint(bool roberta) {
  const std::string p = roberta ? "roberta." : "bert.";
  Tensors t;
  auto r = [](std::vector<int64_t> s) { return 0.3 * torch::randn(s); };
  t[p + "embeddings.word_embeddings.weight"] = r({V, H});
  t[p + "embeddings.position_embeddings.weight"] = r({P, H});
  t[p + "embeddings.token_type_embeddings.weight"] = r({roberta ? 1 : 2, H});
  t[p + "embeddings.LayerNorm.weight"] = 1 + r({H});
  t[p + "embeddings.LayerNorm.bias"] = r({H});
  for (int l = 0; l < NL; ++l) {
    const auto L = p + "encoder.layer." + std::to_string(l) + ".";
    for (const char* n : {"query", "key", "value"}) {
      t[L + "attention.self." + n + ".weight"] = r({H, H});
      t[L + "attention.self." + n + ".bias"] = r({H});
    }
    t[L + "attention.output.dense.weight"] = r({H, H});
    t[L + "attention.output.dense.bias"] = r({H});
    t[L + "attention.output.LayerNorm.weight"] = 1 + r({H});
    t[L + "attention.output.LayerNorm.bias"] = r({H});
    t[L + "intermediate.dense.weight"] = r({FF, H});
    t[L + "intermediate.dense.bias"] = r({FF});
    t[L + "output.dense.weight"] = r({H, FF});
    t[L + "output.dense.bias"] = r({H});
    t[L + "output.LayerNorm.weight"] = 1 + r({H});
    t[L + "output.LayerNorm.bias"] = r({H});
  }
  if (roberta) {
    t["classifier.dense.weight"] = r({H, H});
    t["classifier.dense.bias"] = r({H});
    t["classifier.out_proj.weight"] = r({LABELS, H});
    t["classifier.out_proj.bias"] = r({LABELS});
  } else {
    t[p + "pooler.dense.weight"] = r({H, H});
    t[p + "pooler.dense.bias"] = r({H});
    t["classifier.weight"] = r({LABELS, H});
    t["classifier.bias"] = r({LABELS});
  }
  return t;
}

fs::path write_checkpoint(const std::string& name, const std::string& config, const Tensors& t) {
  auto d = gsoft::test::scratch_dir("encoder_" + name);
  io::write_file_atomic((d / "config.json").string(), config);
  io::write_safetensors((d / "model.safetensors").string(), t, {{"format", "pt"}});
  return d;
}

// The reference, straight from the formulas: embeddings, post-LN blocks, heads.
torch::Tensor reference_logits(const Tensors& t, bool roberta, const std::string& act, const torch::Tensor& ids,
                               const torch::Tensor& mask, const torch::Tensor& types) {
  const std::string p = roberta ? "roberta." : "bert.";
  auto lin = [&](const torch::Tensor& x, const std::string& n) {
    return x.matmul(t.at(n + ".weight").t()) + t.at(n + ".bias");
  };
  auto ln = [&](const torch::Tensor& x, const std::string& n) {
    auto mu = x.mean(-1, true);
    auto var = (x - mu).pow(2).mean(-1, true);
    return (x - mu) / torch::sqrt(var + 1e-5) * t.at(n + ".weight") + t.at(n + ".bias");
  };
  const int64_t B = ids.size(0), T = ids.size(1), dh = H / NH;
  torch::Tensor pos = torch::zeros_like(ids);
  for (int64_t b = 0; b < B; ++b) {
    int64_t next = 0;
    for (int64_t i = 0; i < T; ++i) {
      if (!roberta) {
        pos[b][i] = i;
      } else if (ids[b][i].item<int64_t>() == 1) {
        pos[b][i] = 1;  // padding_idx
      } else {
        pos[b][i] = 2 + next++;
      }
    }
  }
  auto h = t.at(p + "embeddings.word_embeddings.weight").index_select(0, ids.reshape(-1)).view({B, T, H}) +
           t.at(p + "embeddings.position_embeddings.weight").index_select(0, pos.reshape(-1)).view({B, T, H}) +
           t.at(p + "embeddings.token_type_embeddings.weight").index_select(0, types.reshape(-1)).view({B, T, H});
  h = ln(h, p + "embeddings.LayerNorm");
  for (int l = 0; l < NL; ++l) {
    const auto L = p + "encoder.layer." + std::to_string(l) + ".";
    auto q = lin(h, L + "attention.self.query"), k = lin(h, L + "attention.self.key"), v = lin(h, L + "attention.self.value");
    auto ctx = torch::zeros_like(h);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hd = 0; hd < NH; ++hd) {
        auto qs = q[b].slice(1, hd * dh, (hd + 1) * dh), ks = k[b].slice(1, hd * dh, (hd + 1) * dh),
             vs = v[b].slice(1, hd * dh, (hd + 1) * dh);
        auto s = qs.matmul(ks.t()) / std::sqrt(double(dh));
        s = s.masked_fill(mask[b].eq(0).unsqueeze(0), -1e30);
        ctx[b].slice(1, hd * dh, (hd + 1) * dh).copy_(torch::softmax(s, -1).matmul(vs));
      }
    auto a = ln(lin(ctx, L + "attention.output.dense") + h, L + "attention.output.LayerNorm");
    auto i = lin(a, L + "intermediate.dense");
    i = act == "gelu" ? 0.5 * i * (1 + torch::erf(i / std::sqrt(2.0))) : torch::relu(i);
    h = ln(lin(i, L + "output.dense") + a, L + "output.LayerNorm");
  }
  auto cls = h.select(1, 0);
  if (roberta) return lin(torch::tanh(lin(cls, "classifier.dense")), "classifier.out_proj");
  return lin(torch::tanh(lin(cls, p + "pooler.dense")), "classifier");
}

}  // namespace

TEST(Encoder, LoadedCheckpointsMatchTheDenseReference) {
  for (bool roberta : {false, true}) {
    for (const std::string act : {"gelu", "relu"}) {
      auto t = random_checkpoint(roberta);
      auto dir = write_checkpoint(roberta ? "roberta" : "bert", config_json(roberta ? "roberta" : "bert", act), t);
      auto cfg = EncoderConfig::from_file((dir / "config.json").string());
      EXPECT_EQ(cfg.num_labels, LABELS);
      SequenceClassifier model(cfg);
      EXPECT_TRUE(load_hf_checkpoint(*model, dir.string()).empty());
      model->eval();
      // Padding at the end of the second row (pad id 0 for BERT, 1 for RoBERTa).
      const int pad = roberta ? 1 : 0;
      auto ids = torch::tensor({{5, 7, 9, 11, 13, 2}, {6, 8, 10, pad, pad, pad}}).to(torch::kLong);
      auto mask = ids.ne(pad).to(torch::kLong);
      if (roberta) mask[0].fill_(1);
      auto types = roberta ? torch::zeros_like(ids) : torch::tensor({{0, 0, 0, 1, 1, 1}, {0, 0, 1, 0, 0, 0}}).to(torch::kLong);
      torch::NoGradGuard g;
      auto logits = model->forward(ids, mask, types);
      auto expect = reference_logits(t, roberta, act, ids, mask, types);
      EXPECT_LT(max_abs_diff(logits, expect), 1e-4) << (roberta ? "roberta " : "bert ") << act;
      fs::remove_all(dir);
    }
  }
}

TEST(Encoder, OldNamesBareEncoderAndErrors) {
  auto t = random_checkpoint(false);
  // A bare BertModel checkpoint with gamma/beta names and no head.
  Tensors bare;
  for (auto& [k, v] : t) {
    if (k.rfind("bert.", 0) != 0) continue;
    auto key = k.substr(5);
    if (key.size() > 16 && key.compare(key.size() - 16, 16, "LayerNorm.weight") == 0) key = key.substr(0, key.size() - 6) + "gamma";
    bare[key] = v;
  }
  auto dir = write_checkpoint("bare", config_json("bert", "gelu"), bare);
  auto cfg = EncoderConfig::from_file((dir / "config.json").string());
  SequenceClassifier model(cfg);
  auto missing = load_hf_checkpoint(*model, dir.string());
  EXPECT_EQ(missing, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_TRUE(torch::equal(model->encoder->named_parameters()["embeddings.LayerNorm.weight"],
                           t.at("bert.embeddings.LayerNorm.weight")));
  // Missing encoder tensor and wrong shape are named.
  auto broken = t;
  broken.erase("bert.encoder.layer.1.intermediate.dense.weight");
  auto d2 = write_checkpoint("broken", config_json("bert", "gelu"), broken);
  try {
    load_hf_checkpoint(*model, d2.string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lacks encoder tensors: bert.encoder.layer.1.intermediate.dense.weight"),
              std::string::npos) << e.what();
  }
  broken = t;
  broken["bert.encoder.layer.0.attention.self.query.weight"] = torch::zeros({H, H + 1});
  auto d3 = write_checkpoint("shape", config_json("bert", "gelu"), broken);
  try {
    load_hf_checkpoint(*model, d3.string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected shape [16, 16] for 'bert.encoder.layer.0.attention.self.query.weight'"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(EncoderConfig::from_json(R"({"model_type":"gpt2"})"), std::runtime_error);
  EXPECT_THROW(EncoderConfig::from_json(R"({"hidden_size":10,"num_attention_heads":4})"), std::runtime_error);
  EXPECT_THROW(EncoderConfig::from_json(R"({"hidden_act":"swish"})"), std::runtime_error);
  try {
    EncoderConfig::from_json(R"({"architectures":)" + std::string(200000, '['), "deep.json");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.json: JSON nests deeper than 64 levels"), std::string::npos) << e.what();
  }
  for (auto& d : {dir, d2, d3}) fs::remove_all(d);
}

// The paper's targets adapt all 6 linear layers of every block (and the pooler is left alone);
// the adapted model is unchanged at initialisation.
TEST(Encoder, AdaptersAttachByHuggingFaceNames) {
  auto t = random_checkpoint(true);
  auto dir = write_checkpoint("adapt", config_json("roberta", "gelu"), t);
  SequenceClassifier model(EncoderConfig::from_file((dir / "config.json").string()));
  load_hf_checkpoint(*model, dir.string());
  model->eval();
  auto ids = torch::tensor({{0, 5, 6, 7, 2}}).to(torch::kLong);
  auto before = model->forward(ids).detach();
  AdapterConfig c;
  c.method = Method::GSOFT;
  c.block_size = 4;
  c.target_modules = {"query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"};
  c.modules_to_save = {"classifier"};
  auto report = inject_adapters(*model, c);
  EXPECT_EQ(report.adapted.size(), static_cast<size_t>(6 * NL));
  // per layer: 4 x (2*H*4 + H) + (2*H*4 + FF) + (2*FF*4 + H)
  EXPECT_EQ(report.adapter_params, NL * (4 * (2 * H * 4 + H) + (2 * H * 4 + FF) + (2 * FF * 4 + H)));
  EXPECT_LT(max_abs_diff(model->forward(ids), before), 1e-5);
  fs::remove_all(dir);
}

TEST(Encoder, AuthorsGlueHeadAndLosses) {
  for (bool roberta : {false, true}) {
    auto t = random_checkpoint(roberta);
    t["classifier.dense.weight"] = 0.3 * torch::randn({H, H});
    t["classifier.dense.bias"] = 0.3 * torch::randn({H});
    t["classifier.out_proj.weight"] = 0.3 * torch::randn({LABELS, H});
    t["classifier.out_proj.bias"] = 0.3 * torch::randn({LABELS});
    auto dir = write_checkpoint("glue", config_json(roberta ? "roberta" : "bert", "gelu"), t);
    SequenceClassifier model(EncoderConfig::from_file((dir / "config.json").string()), HeadKind::AuthorsGlue,
                             glue_head_dropout("rte"));
    EXPECT_DOUBLE_EQ(model->head_dropout, 0.2);
    EXPECT_TRUE(load_hf_checkpoint(*model, dir.string()).empty());
    model->eval();
    auto ids = torch::tensor({{3, 5, 6, 7, 2}, {3, 9, 8, 4, 2}}).to(torch::kLong);
    torch::NoGradGuard g;
    auto cls = model->encoder->forward(ids).last_hidden_state.select(1, 0);
    auto expect = torch::relu(cls.matmul(t.at("classifier.dense.weight").t()) + t.at("classifier.dense.bias"))
                      .matmul(t.at("classifier.out_proj.weight").t()) + t.at("classifier.out_proj.bias");
    auto logits = model->forward(ids);
    EXPECT_LT(max_abs_diff(logits, expect), 1e-5);
    auto labels = torch::tensor({2, 0}).to(torch::kLong);
    auto ce = -torch::log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).mean();
    EXPECT_LT(max_abs_diff(sequence_classification_loss(logits, labels), ce), 1e-6);
    fs::remove_all(dir);
  }
  auto pred = torch::tensor({{0.5f}, {2.0f}});
  EXPECT_NEAR(sequence_classification_loss(pred, torch::tensor({1.0f, 1.0f})).item<double>(), (0.25 + 1.0) / 2, 1e-6);
  EXPECT_THROW(glue_head_dropout("sst5"), std::invalid_argument);
  EXPECT_THROW(sequence_classification_loss(torch::zeros({2, 3}), torch::zeros({2})), std::invalid_argument);
}
