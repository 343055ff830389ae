#include "gsoft/diffusion/pipeline.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "gsoft/adapters/config.h"
#include "gsoft/core/error.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "io/file_util.h"

namespace gsoft::diffusion {
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPipelineClass = "GSoftPixelDiffusionPipeline";

void load_module_tensors(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& origin, const std::vector<std::string>& ignored) {
  torch::NoGradGuard g;
  std::vector<std::string> missing;
  std::set<std::string> used;
  for (auto& p : module.named_parameters()) {
    if (is_adapter_parameter(p.key())) continue;
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      missing.push_back(p.key());
      continue;
    }
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error(origin + ": tensor '" + p.key() + "' has shape " + format_shape(it->second.sizes()) +
                               ", expected " + format_shape(p.value().sizes()));
    p.value().copy_(it->second.to(p.value().scalar_type()));
    used.insert(p.key());
  }
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < 6; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > 6) s += ", ... (" + std::to_string(names.size()) + " in all)";
    return s;
  };
  if (!missing.empty()) throw std::runtime_error(origin + ": missing tensors: " + list(missing));
  std::vector<std::string> unknown;
  for (const auto& [k, t] : tensors) {
    if (used.count(k)) continue;
    bool skip = false;
    for (const auto& prefix : ignored) skip = skip || k.rfind(prefix, 0) == 0;
    if (!skip) unknown.push_back(k);
  }
  if (!unknown.empty()) throw std::runtime_error(origin + ": tensors the model does not have: " + list(unknown));
}

namespace {

std::map<std::string, torch::Tensor> module_tensors(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> t;
  for (const auto& p : m.named_parameters())
    if (!is_adapter_parameter(p.key())) t[p.key()] = p.value().detach().contiguous();
  return t;
}

json text_encoder_config_json(const EncoderConfig& c) {
  return {{"architectures", {"BertModel"}},
          {"model_type", c.model_type},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"intermediate_size", c.intermediate_size},
          {"hidden_act", c.hidden_act},
          {"max_position_embeddings", c.max_position_embeddings},
          {"type_vocab_size", c.type_vocab_size},
          {"layer_norm_eps", c.layer_norm_eps},
          {"pad_token_id", c.pad_token_id},
          {"hidden_dropout_prob", c.hidden_dropout_prob},
          {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}};
}

void check_sizes(const Pipeline& p, const std::string& origin) {
  if (p.text_encoder->config.hidden_size != p.unet->config.cross_attention_dim)
    throw std::runtime_error(origin + ": the text encoder's hidden_size is " + std::to_string(p.text_encoder->config.hidden_size) +
                             " but the UNet's cross_attention_dim is " + std::to_string(p.unet->config.cross_attention_dim));
  if (p.tokenizer->vocab_size() > p.text_encoder->config.vocab_size)
    throw std::runtime_error(origin + ": the tokenizer has " + std::to_string(p.tokenizer->vocab_size()) +
                             " ids but the text encoder's vocab_size is " + std::to_string(p.text_encoder->config.vocab_size));
  if (p.max_prompt_tokens < 2 || p.max_prompt_tokens > p.text_encoder->config.max_tokens())
    throw std::runtime_error(origin + ": model_max_length " + std::to_string(p.max_prompt_tokens) + " must be in 2.." +
                             std::to_string(p.text_encoder->config.max_tokens()) + " (the text encoder's positions)");
}

}  // namespace

Pipeline Pipeline::create(const UNetConfig& unet, const EncoderConfig& text, const std::string& tokenizer_json,
                          const SchedulerConfig& scheduler, int64_t max_prompt_tokens, uint64_t seed) {
  torch::manual_seed(seed);
  Pipeline p;
  p.unet = UNet2DConditionModel(unet);
  p.text_encoder = EncoderModel(text, /*add_pooler=*/false);
  init_weights(*p.text_encoder);
  p.tokenizer = Tokenizer::from_json(tokenizer_json, "tokenizer/tokenizer.json");
  p.tokenizer_json = tokenizer_json;
  p.scheduler = scheduler;
  p.max_prompt_tokens = max_prompt_tokens;
  check_sizes(p, "pipeline");
  return p;
}

Pipeline Pipeline::load(const std::string& dir) {
  const fs::path d(dir);
  const std::string index_path = (d / "model_index.json").string();
  const json index = io::parse_json(io::read_text_file(index_path), index_path);
  if (!index.is_object()) throw std::runtime_error(index_path + ": expected a JSON object");
  for (const char* part : {"unet", "text_encoder", "tokenizer", "scheduler"})
    if (!index.contains(part)) throw std::runtime_error(index_path + ": no \"" + std::string(part) + "\" component");
  for (const char* part : {"vae", "vqvae"})
    if (index.contains(part) && !index[part].is_null() && !(index[part].is_array() && index[part].at(0).is_null()))
      throw std::runtime_error(index_path + ": has a \"" + std::string(part) +
                               "\" component; gsoft's pipeline works in pixel space and supports none");
  Pipeline p;
  const std::string unet_config = (d / "unet" / "config.json").string();
  p.unet = UNet2DConditionModel(UNetConfig::from_json(io::read_text_file(unet_config), unet_config));
  const std::string unet_weights = (d / "unet" / kUNetWeightsFile).string();
  load_module_tensors(*p.unet, io::read_safetensors(unet_weights).tensors, unet_weights);

  const std::string text_config = (d / "text_encoder" / "config.json").string();
  p.text_encoder = EncoderModel(EncoderConfig::from_file(text_config), /*add_pooler=*/false);
  const std::string text_weights = (d / "text_encoder" / "model.safetensors").string();
  // A BertModel saved by transformers may carry its pooler and position_ids buffer; neither is used.
  load_module_tensors(*p.text_encoder, io::read_safetensors(text_weights).tensors, text_weights,
                      {"pooler.", "embeddings.position_ids"});

  const std::string tok_path = (d / "tokenizer" / "tokenizer.json").string();
  p.tokenizer_json = io::read_text_file(tok_path);
  p.tokenizer = Tokenizer::from_json(p.tokenizer_json, tok_path);
  const fs::path tok_config = d / "tokenizer" / "tokenizer_config.json";
  p.max_prompt_tokens = p.text_encoder->config.max_tokens();
  if (fs::exists(tok_config)) {
    const json t = io::parse_json(io::read_text_file(tok_config.string()), tok_config.string());
    p.max_prompt_tokens = io::json_field<int64_t>(t, "model_max_length", p.max_prompt_tokens, tok_config.string());
  }
  const std::string sched = (d / "scheduler" / "scheduler_config.json").string();
  p.scheduler = SchedulerConfig::from_json(io::read_text_file(sched), sched);
  check_sizes(p, dir);
  return p;
}

void Pipeline::save(const std::string& dir) const {
  const fs::path d(dir);
  for (const char* sub : {"unet", "text_encoder", "tokenizer", "scheduler"}) fs::create_directories(d / sub);
  io::write_safetensors((d / "unet" / kUNetWeightsFile).string(), module_tensors(*unet.ptr()), {{"format", "pt"}});
  io::write_file_atomic((d / "unet" / "config.json").string(), unet->config.to_json().dump(2) + "\n");
  io::write_safetensors((d / "text_encoder" / "model.safetensors").string(), module_tensors(*text_encoder.ptr()), {{"format", "pt"}});
  io::write_file_atomic((d / "text_encoder" / "config.json").string(),
                        text_encoder_config_json(text_encoder->config).dump(2) + "\n");
  // tokenizer.json is written back from the file it was read from, byte for byte.
  io::write_file_atomic((d / "tokenizer" / "tokenizer.json").string(), tokenizer_json);
  const json tok_config = {{"tokenizer_class", "BertTokenizerFast"}, {"model_max_length", max_prompt_tokens},
                           {"do_lower_case", true}, {"pad_token", "[PAD]"}, {"unk_token", "[UNK]"},
                           {"cls_token", "[CLS]"}, {"sep_token", "[SEP]"}, {"mask_token", "[MASK]"}};
  io::write_file_atomic((d / "tokenizer" / "tokenizer_config.json").string(), tok_config.dump(2) + "\n");
  io::write_file_atomic((d / "scheduler" / "scheduler_config.json").string(), scheduler.to_json().dump(2) + "\n");
  const json index = {{"_class_name", kPipelineClass},
                      {"_diffusers_version", "0.21.0"},
                      {"scheduler", {"diffusers", scheduler.class_name}},
                      {"text_encoder", {"transformers", "BertModel"}},
                      {"tokenizer", {"transformers", "BertTokenizerFast"}},
                      {"unet", {"diffusers", "UNet2DConditionModel"}}};
  io::write_file_atomic((d / "model_index.json").string(), index.dump(2) + "\n");
}

std::pair<torch::Tensor, torch::Tensor> Pipeline::tokenize_prompts(const std::vector<std::string>& prompts) const {
  const auto B = static_cast<int64_t>(prompts.size());
  torch::Tensor ids = torch::full({B, max_prompt_tokens}, tokenizer->pad_id(), torch::kLong);
  torch::Tensor mask = torch::zeros({B, max_prompt_tokens}, torch::kLong);
  for (int64_t i = 0; i < B; ++i) {
    const Encoding e = tokenizer->encode(prompts[static_cast<size_t>(i)], std::nullopt, max_prompt_tokens);
    const auto n = static_cast<int64_t>(e.ids.size());
    ids[i].narrow(0, 0, n).copy_(torch::tensor(e.ids, torch::kLong));
    mask[i].narrow(0, 0, n).fill_(1);
  }
  return {ids, mask};
}

torch::Tensor Pipeline::encode_prompts(const std::vector<std::string>& prompts) const {
  auto [ids, mask] = tokenize_prompts(prompts);
  return text_encoder.ptr()->forward(ids, mask).last_hidden_state;
}

torch::Tensor to_uint8(const torch::Tensor& images) {
  return ((images.to(torch::kFloat32) + 1.0) * 127.5).round().clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor from_uint8(const torch::Tensor& images) { return images.to(torch::kFloat32) / 127.5 - 1.0; }

torch::Tensor sample_images(Pipeline& p, const std::vector<std::string>& prompts, const std::vector<uint64_t>& seeds,
                            const SampleOptions& o) {
  GSOFT_CHECK(prompts.size() == seeds.size(), "sample_images: ", prompts.size(), " prompts but ", seeds.size(), " seeds");
  GSOFT_CHECK(o.batch_size >= 1, "sample_images: batch_size must be positive, got ", o.batch_size);
  GSOFT_CHECK(o.guidance >= 0, "sample_images: guidance must be >= 0, got ", o.guidance);
  const NoiseSchedule schedule(p.scheduler);
  const std::vector<int64_t> timesteps = schedule.ddim_timesteps(o.steps);
  torch::NoGradGuard g;
  const bool unet_training = p.unet->is_training(), text_training = p.text_encoder->is_training();
  p.unet->eval();
  p.text_encoder->eval();
  const int64_t C = p.image_channels(), S = p.image_size();
  const auto N = static_cast<int64_t>(prompts.size());
  std::vector<torch::Tensor> out;
  const bool guided = o.guidance != 1.0;
  const torch::Tensor uncond = guided ? p.encode_prompts({""}) : torch::Tensor();
  for (int64_t b0 = 0; b0 < N; b0 += o.batch_size) {
    const int64_t n = std::min(o.batch_size, N - b0);
    std::vector<std::string> batch_prompts(prompts.begin() + b0, prompts.begin() + b0 + n);
    std::vector<torch::Tensor> noise;
    for (int64_t i = 0; i < n; ++i) {
      auto gen = at::detail::createCPUGenerator(seeds[static_cast<size_t>(b0 + i)]);
      noise.push_back(torch::randn({C, S, S}, gen, torch::kFloat32));
    }
    torch::Tensor x = torch::stack(noise);
    torch::Tensor context = p.encode_prompts(batch_prompts);
    if (guided) context = torch::cat({uncond.expand({n, -1, -1}), context});
    for (size_t k = 0; k < timesteps.size(); ++k) {
      const int64_t t = timesteps[k];
      const torch::Tensor tt = torch::full({guided ? 2 * n : n}, t, torch::kLong);
      torch::Tensor eps = p.unet->forward(guided ? torch::cat({x, x}) : x, tt, context);
      if (guided) {
        const auto parts = eps.chunk(2);
        eps = parts[0] + o.guidance * (parts[1] - parts[0]);
      }
      // Guidance extrapolates past the data; clipped x0 and the noise must then agree (GLIDE).
      x = schedule.ddim_step(eps, t, o.steps, x, /*use_clipped_model_output=*/true);
      if (o.on_step) o.on_step(b0, static_cast<int64_t>(k) + 1, o.steps);
    }
    out.push_back(x.clamp(-1, 1));
  }
  p.unet->train(unet_training);
  p.text_encoder->train(text_training);
  return torch::cat(out);
}

}  // namespace gsoft::diffusion
