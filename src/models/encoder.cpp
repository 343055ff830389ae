#include "gsoft/models/encoder.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "gsoft/core/error.h"
#include "gsoft/io/checkpoint.h"
#include "io/file_util.h"

namespace gsoft {
namespace {

using torch::nn::Module;

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "relu") return torch::relu(x);
  throw std::invalid_argument("unknown hidden_act '" + name + "'; expected one of: gelu, gelu_new, gelu_pytorch_tanh, relu");
}

// dense -> dropout -> LayerNorm(x + residual): attention.output and output.
struct DenseNormImpl : Module {
  DenseNormImpl(int64_t in, int64_t out, double eps) {
    dense = register_module("dense", AdaptableLinear(in, out));
    norm = register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({out}).eps(eps)));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, double p) {
    return norm(torch::dropout(dense(x), p, is_training()) + residual);
  }
  AdaptableLinear dense{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(DenseNorm);

struct SelfAttentionImpl : Module {
  SelfAttentionImpl(int64_t h, int64_t heads) : heads_(heads) {
    query = register_module("query", AdaptableLinear(h, h));
    key = register_module("key", AdaptableLinear(h, h));
    value = register_module("value", AdaptableLinear(h, h));
  }
  // x: (B, T, H); mask_add: (B, 1, 1, T) additive
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask_add, double p) {
    const int64_t B = x.size(0), T = x.size(1), H = x.size(2), dh = H / heads_;
    auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads_, dh}).transpose(1, 2); };
    auto q = split(query(x)), k = split(key(x)), v = split(value(x));
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(dh)) + mask_add;
    auto probs = torch::dropout(torch::softmax(scores, -1), p, is_training());
    return torch::matmul(probs, v).transpose(1, 2).reshape({B, T, H});
  }
  int64_t heads_;
  AdaptableLinear query{nullptr}, key{nullptr}, value{nullptr};
};
TORCH_MODULE(SelfAttention);

struct LayerImpl : Module {
  explicit LayerImpl(const EncoderConfig& c) : config(c) {
    auto attention = register_module("attention", std::make_shared<Module>());
    self = attention->register_module("self", SelfAttention(c.hidden_size, c.num_attention_heads));
    attn_out = attention->register_module("output", DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps));
    auto inter = register_module("intermediate", std::make_shared<Module>());
    intermediate = inter->register_module("dense", AdaptableLinear(c.hidden_size, c.intermediate_size));
    output = register_module("output", DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask_add) {
    const double p = config.hidden_dropout_prob;
    auto a = attn_out(self(x, mask_add, config.attention_probs_dropout_prob), x, p);
    return output(activation(config.hidden_act, intermediate(a)), a, p);
  }
  EncoderConfig config;
  SelfAttention self{nullptr};
  DenseNorm attn_out{nullptr}, output{nullptr};
  AdaptableLinear intermediate{nullptr};
};
TORCH_MODULE(Layer);

struct EmbeddingsImpl : Module {
  explicit EmbeddingsImpl(const EncoderConfig& c) : config(c) {
    word = register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    position = register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    token_type = register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
    norm = register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  }
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& token_types) {
    torch::Tensor positions;
    if (config.is_roberta()) {
      // RoBERTa numbers real tokens from padding_idx + 1; padding keeps padding_idx.
      auto mask = ids.ne(config.pad_token_id).to(torch::kLong);
      positions = torch::cumsum(mask, 1) * mask + config.pad_token_id;
    } else {
      positions = torch::arange(ids.size(1), ids.options()).unsqueeze(0).expand_as(ids);
    }
    GSOFT_CHECK(positions.max().item<int64_t>() < config.max_position_embeddings, "sequence of length ", ids.size(1),
                " exceeds max_position_embeddings (", config.max_position_embeddings, ")");
    auto e = word(ids) + position(positions) + token_type(token_types);
    return torch::dropout(norm(e), config.hidden_dropout_prob, is_training());
  }
  EncoderConfig config;
  torch::nn::Embedding word{nullptr}, position{nullptr}, token_type{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Embeddings);

}  // namespace

EncoderConfig EncoderConfig::from_json(const std::string& text, const std::string& origin) {
  const auto j = io::parse_json(text, origin);
  if (!j.is_object()) throw std::runtime_error(origin + ": expected a JSON object");
  EncoderConfig c;
  c.model_type = io::json_field<std::string>(j, "model_type", "bert", origin);
  if (c.model_type != "bert" && c.model_type != "roberta")
    throw std::runtime_error(origin + ": model_type '" + c.model_type + "' is not supported; expected bert or roberta");
  if (c.is_roberta()) c.pad_token_id = 1;
  c.vocab_size = io::json_field<int64_t>(j, "vocab_size", c.vocab_size, origin);
  c.hidden_size = io::json_field<int64_t>(j, "hidden_size", c.hidden_size, origin);
  c.num_hidden_layers = io::json_field<int64_t>(j, "num_hidden_layers", c.num_hidden_layers, origin);
  c.num_attention_heads = io::json_field<int64_t>(j, "num_attention_heads", c.num_attention_heads, origin);
  c.intermediate_size = io::json_field<int64_t>(j, "intermediate_size", c.intermediate_size, origin);
  c.hidden_act = io::json_field<std::string>(j, "hidden_act", c.hidden_act, origin);
  c.max_position_embeddings = io::json_field<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, origin);
  c.type_vocab_size = io::json_field<int64_t>(j, "type_vocab_size", c.type_vocab_size, origin);
  c.layer_norm_eps = io::json_field<double>(j, "layer_norm_eps", c.layer_norm_eps, origin);
  c.pad_token_id = io::json_field<int64_t>(j, "pad_token_id", c.pad_token_id, origin);
  c.architectures = io::json_field<std::vector<std::string>>(j, "architectures", {}, origin);
  c.hidden_dropout_prob = io::json_field<double>(j, "hidden_dropout_prob", c.hidden_dropout_prob, origin);
  c.attention_probs_dropout_prob =
      io::json_field<double>(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, origin);
  if (j.contains("id2label") && j["id2label"].is_object()) {
    std::map<int64_t, std::string> by_id;
    for (auto it = j["id2label"].begin(); it != j["id2label"].end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (const std::exception&) {
      }
      if (id < 0 || !it.value().is_string())
        throw std::runtime_error(origin + ": id2label entry \"" + it.key() + "\": " + it.value().dump() +
                                 ", expected \"<id>\": \"<label>\"");
      by_id[id] = it.value().get<std::string>();
    }
    for (const auto& [id, name] : by_id) c.label_names.push_back(name);
    c.num_labels = static_cast<int64_t>(c.label_names.size());
  }
  c.problem_type = io::json_field<std::string>(j, "problem_type", "", origin);
  c.classifier_head = io::json_field<std::string>(j, "gsoft_classifier_head", "", origin);
  if (!c.classifier_head.empty() && c.classifier_head != "huggingface" && c.classifier_head != "authors_glue")
    throw std::runtime_error(origin + ": gsoft_classifier_head '" + c.classifier_head +
                             "', expected huggingface or authors_glue");
  c.num_labels = io::json_field<int64_t>(j, "num_labels", c.num_labels, origin);
  // Upper bounds too: the model is allocated from these numbers before any weight is read.
  auto in_range = [&](const char* name, int64_t v, int64_t most) {
    if (v < 1 || v > most)
      throw std::runtime_error(origin + ": " + name + " is " + std::to_string(v) + ", expected 1.." + std::to_string(most));
  };
  in_range("vocab_size", c.vocab_size, int64_t{1} << 21);
  in_range("hidden_size", c.hidden_size, int64_t{1} << 16);
  in_range("num_hidden_layers", c.num_hidden_layers, 1024);
  in_range("num_attention_heads", c.num_attention_heads, 1024);
  in_range("intermediate_size", c.intermediate_size, int64_t{1} << 18);
  in_range("max_position_embeddings", c.max_position_embeddings, int64_t{1} << 20);
  in_range("type_vocab_size", c.type_vocab_size, 1024);
  in_range("num_labels", c.num_labels, int64_t{1} << 20);
  const int64_t h = c.hidden_size;
  const int64_t params = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h +
                         c.num_hidden_layers * (4 * h * h + 2 * h * c.intermediate_size);
  if (params > kMaxEncoderParams)
    throw std::runtime_error(origin + ": describes a model of about " + std::to_string(params) +
                             " parameters, more than the limit of " + std::to_string(kMaxEncoderParams));
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
    throw std::runtime_error(origin + ": pad_token_id " + std::to_string(c.pad_token_id) + " is outside the vocabulary 0.." +
                             std::to_string(c.vocab_size - 1));
  for (const auto& [name, p] : {std::pair<const char*, double>{"hidden_dropout_prob", c.hidden_dropout_prob},
                                {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}})
    if (!(p >= 0 && p < 1))
      throw std::runtime_error(origin + ": " + name + " is " + std::to_string(p) + ", expected a value in [0, 1)");
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1))
    throw std::runtime_error(origin + ": layer_norm_eps is " + std::to_string(c.layer_norm_eps) + ", expected a value in (0, 1)");
  if (c.hidden_size % c.num_attention_heads != 0)
    throw std::runtime_error(origin + ": hidden_size (" + std::to_string(c.hidden_size) +
                             ") must be divisible by num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
  try {
    activation(c.hidden_act, torch::zeros({1}));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(origin + ": " + e.what());
  }
  return c;
}

EncoderConfig EncoderConfig::from_file(const std::string& path) {
  return from_json(io::read_text_file(path), path);
}

EncoderModelImpl::EncoderModelImpl(const EncoderConfig& c, bool add_pooler) : config(c) {
  register_module("embeddings", Embeddings(c));
  auto encoder = register_module("encoder", std::make_shared<Module>());
  auto layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Layer(c));
  if (add_pooler) register_module("pooler", std::make_shared<Module>())->register_module("dense", AdaptableLinear(c.hidden_size, c.hidden_size));
}

EncoderOutput EncoderModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                        const torch::Tensor& token_type_ids) {
  GSOFT_CHECK(input_ids.dim() == 2, "input_ids: expected (batch, tokens), got ", format_shape(input_ids.sizes()));
  auto mask = attention_mask.defined() ? attention_mask : torch::ones_like(input_ids);
  auto types = token_type_ids.defined() ? token_type_ids : torch::zeros_like(input_ids);
  auto h = named_children()["embeddings"]->as<EmbeddingsImpl>()->forward(input_ids, types);
  // (B, 1, 1, T): 0 for tokens, the lowest float for padding.
  auto mask_add = (1.0 - mask.to(h.dtype())).unsqueeze(1).unsqueeze(2) * std::numeric_limits<float>::lowest();
  auto layers = named_children()["encoder"]->named_children()["layer"]->as<torch::nn::ModuleListImpl>();
  for (const auto& layer : *layers) h = layer->as<LayerImpl>()->forward(h, mask_add);
  EncoderOutput out{h, {}};
  auto children = named_children();
  if (children.contains("pooler")) {
    auto dense = children["pooler"]->named_children()["dense"]->as<AdaptableLinearImpl>();
    out.pooler_output = torch::tanh(dense->forward(h.select(1, 0)));
  }
  return out;
}

double glue_head_dropout(const std::string& task) {
  static const std::map<std::string, double> kDropout{{"cola", 0.1}, {"mnli", 0.15}, {"mrpc", 0.0}, {"qnli", 0.1},
                                                      {"qqp", 0.15}, {"rte", 0.2},   {"sst2", 0.0}, {"stsb", 0.2}};
  auto it = kDropout.find(task);
  if (it != kDropout.end()) return it->second;
  throw std::invalid_argument("unknown GLUE task '" + task + "'; expected one of: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb");
}

torch::Tensor sequence_classification_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  GSOFT_CHECK(logits.dim() == 2 && labels.dim() == 1 && labels.size(0) == logits.size(0),
              "loss: expected logits (B, C) and labels (B), got ", format_shape(logits.sizes()), " and ",
              format_shape(labels.sizes()));
  if (logits.size(1) == 1) return torch::mse_loss(logits.squeeze(1), labels.to(logits.dtype()));
  GSOFT_CHECK(labels.scalar_type() == torch::kLong, "loss: classification labels must be int64, got ",
              labels.scalar_type());
  return torch::nn::functional::cross_entropy(logits, labels);
}

SequenceClassifierImpl::SequenceClassifierImpl(const EncoderConfig& c, HeadKind head, double dropout)
    : config(c), head_kind(head), head_dropout(dropout < 0 ? c.hidden_dropout_prob : dropout) {
  // Hugging Face's RobertaForSequenceClassification has no pooler; BERT's uses it.
  encoder = register_module(c.is_roberta() ? "roberta" : "bert", EncoderModel(c, !c.is_roberta()));
  if (c.is_roberta() || head == HeadKind::AuthorsGlue) {
    auto classifier = register_module("classifier", std::make_shared<Module>());
    classifier->register_module("dense", AdaptableLinear(c.hidden_size, c.hidden_size));
    classifier->register_module("out_proj", AdaptableLinear(c.hidden_size, c.num_labels));
  } else {
    register_module("classifier", AdaptableLinear(c.hidden_size, c.num_labels));
  }
}

torch::Tensor SequenceClassifierImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                              const torch::Tensor& token_type_ids) {
  auto out = encoder->forward(input_ids, attention_mask, token_type_ids);
  const double p = head_dropout;
  const bool train = is_training();
  auto head = named_children()["classifier"];
  if (config.is_roberta() || head_kind == HeadKind::AuthorsGlue) {
    auto dense = head->named_children()["dense"]->as<AdaptableLinearImpl>();
    auto proj = head->named_children()["out_proj"]->as<AdaptableLinearImpl>();
    auto x = out.last_hidden_state.select(1, 0);
    if (head_kind == HeadKind::AuthorsGlue) return proj->forward(torch::dropout(torch::relu(dense->forward(x)), p, train));
    x = torch::dropout(torch::tanh(dense->forward(torch::dropout(x, p, train))), p, train);
    return proj->forward(x);
  }
  return head->as<AdaptableLinearImpl>()->forward(torch::dropout(out.pooler_output, p, train));
}

void init_weights(torch::nn::Module& model, double std) {
  torch::NoGradGuard g;
  for (const auto& p : model.named_parameters()) {
    const std::string& n = p.key();
    auto ends = [&](const char* s) { return n.size() >= std::strlen(s) && n.compare(n.size() - std::strlen(s), std::strlen(s), s) == 0; };
    const bool norm = n.find("LayerNorm") != std::string::npos || n.find("layer_norm") != std::string::npos;
    if (is_adapter_parameter(n)) continue;  // adapters keep their own (identity) initialisation
    if (norm) p.value().fill_(ends("weight") ? 1.0 : 0.0);
    else if (ends("bias")) p.value().zero_();
    else p.value().normal_(0, std);
  }
}

MaskedLMImpl::MaskedLMImpl(const EncoderConfig& c) : config(c) {
  encoder = register_module(c.is_roberta() ? "roberta" : "bert", EncoderModel(c, /*add_pooler=*/false));
  const auto ln = torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps);
  std::shared_ptr<Module> holder;
  if (c.is_roberta()) {
    holder = register_module("lm_head", std::make_shared<Module>());
    dense_ = holder->register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
    norm_ = holder->register_module("layer_norm", torch::nn::LayerNorm(ln));
  } else {
    holder = register_module("cls", std::make_shared<Module>())->register_module("predictions", std::make_shared<Module>());
    auto transform = holder->register_module("transform", std::make_shared<Module>());
    dense_ = transform->register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
    norm_ = transform->register_module("LayerNorm", torch::nn::LayerNorm(ln));
  }
  bias_ = holder->register_parameter("bias", torch::zeros({c.vocab_size}));
}

torch::Tensor MaskedLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                    const torch::Tensor& positions) {
  auto h = encoder->forward(input_ids, attention_mask).last_hidden_state;
  h = h.reshape({-1, h.size(-1)}).index_select(0, positions);
  h = norm_(activation(config.is_roberta() ? "gelu" : config.hidden_act, dense_(h)));
  // The decoder is the word embedding matrix (tied, as in Hugging Face).
  // A copy of the handle: named_parameters() returns a temporary dictionary.
  const torch::Tensor words = encoder->named_parameters()["embeddings.word_embeddings.weight"];
  return torch::nn::functional::linear(h, words, bias_);
}

std::vector<std::string> load_hf_checkpoint(SequenceClassifierImpl& model, const std::string& dir) {
  auto file = io::read_checkpoint(dir);
  const std::string prefix = model.config.is_roberta() ? "roberta." : "bert.";
  bool has_prefix = false;
  for (const auto& [k, t] : file.tensors) has_prefix = has_prefix || k.rfind(prefix, 0) == 0;
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [k, t] : file.tensors) {
    std::string key = k;
    // Old BERT checkpoints name LayerNorm parameters gamma/beta.
    for (auto [from, to] : {std::pair<const char*, const char*>{"LayerNorm.gamma", "LayerNorm.weight"},
                            {"LayerNorm.beta", "LayerNorm.bias"}})
      if (key.size() >= std::strlen(from) && key.compare(key.size() - std::strlen(from), std::strlen(from), from) == 0)
        key = key.substr(0, key.size() - std::strlen(from)) + to;
    if (!has_prefix && key.rfind("classifier.", 0) != 0) key = prefix + key;
    tensors[key] = t;
  }
  std::vector<std::string> missing_encoder, missing_head;
  torch::NoGradGuard g;
  for (auto& p : model.named_parameters()) {
    if (is_adapter_parameter(p.key())) continue;  // adapter tensors come from adapter files
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      // Like transformers, a checkpoint without a pooler (e.g. BertForMaskedLM) leaves it freshly
      // initialised and reports it with the head.
      const bool pooler = p.key().rfind(prefix + "pooler.", 0) == 0;
      (p.key().rfind(prefix, 0) == 0 && !pooler ? missing_encoder : missing_head).push_back(p.key());
      continue;
    }
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error("expected shape " + format_shape(p.value().sizes()) + " for '" + it->first + "' in " + dir +
                               ", got " + format_shape(it->second.sizes()));
    p.value().copy_(it->second.to(p.value().scalar_type()));
  }
  if (!missing_encoder.empty()) {
    std::string names;
    for (size_t i = 0; i < missing_encoder.size() && i < 8; ++i) names += (i ? ", " : "") + missing_encoder[i];
    if (missing_encoder.size() > 8) names += ", ... (" + std::to_string(missing_encoder.size()) + " in all)";
    throw std::runtime_error(dir + ": checkpoint lacks encoder tensors: " + names);
  }
  return missing_head;
}

}  // namespace gsoft
