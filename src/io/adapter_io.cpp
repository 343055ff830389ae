#include "gsoft/io/adapter_io.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "gsoft/adapters/adaptable_layer.h"
#include "gsoft/core/error.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/checkpoint.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/version.h"
#include "io/file_util.h"

namespace gsoft::io {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

const char* peft_type(Method m) {
  switch (m) {
    case Method::GSOFT:
    case Method::DoubleGSOFT: return "GSOFT";
    case Method::OFT: return "OFT";
    case Method::BOFT: return "BOFT";
    case Method::LoRA: return "LORA";
    case Method::Full: return "FULL";
  }
  return "";
}

std::string shape_of(const torch::Tensor& t) { return format_shape(t.sizes()); }

// Copies `src` into `dst` after checking the shape; `key` and `file` name it in errors.
void assign(torch::Tensor& dst, const torch::Tensor& src_in, const std::string& key, const std::string& file) {
  auto src = src_in;
  // PEFT's conv LoRA tensors (r, in, kh, kw) / (out, r, 1, 1) flatten to gsoft's matrix view.
  if (src.dim() == 4 && dst.dim() == 2 && src.size(0) == dst.size(0) && src.numel() == dst.numel())
    src = src.reshape(dst.sizes());
  if (dst.sizes() != src.sizes())
    throw std::runtime_error("expected shape " + shape_of(dst) + " for '" + key + "' in " + file + ", got " + shape_of(src));
  torch::NoGradGuard g;
  dst.copy_(src.to(dst.scalar_type()));
}

}  // namespace

// The fields of a parsed adapter_config.json; throws std::invalid_argument for bad values.
static AdapterConfig parse_adapter_config(const json& j, const std::string& origin);

std::string adapter_config_to_json(const AdapterConfig& c) {
  json j;
  j["peft_type"] = peft_type(c.method);
  if (c.target_regex.empty())
    j["target_modules"] = c.target_modules;
  else
    j["target_modules"] = c.target_regex;  // PEFT: a string is a full-match regex
  j["exclude_modules"] = c.exclude_modules;
  j["modules_to_save"] = c.modules_to_save;
  j["bias"] = "none";
  j["init_weights"] = c.init_weights;
  j["inference_mode"] = true;
  j["gsoft_version"] = GSOFT_VERSION;
  switch (c.method) {
    case Method::GSOFT:
    case Method::DoubleGSOFT:
      j["block_size"] = c.block_size;
      j["nblocks"] = c.nblocks;
      j["parametrization"] = to_string(c.parametrization);
      j["num_cayley_neumann_terms"] = c.neumann_terms;
      j["layout"] = to_string(c.layout);
      j["scale"] = c.scale;
      j["double_gsoft"] = c.method == Method::DoubleGSOFT;
      break;
    case Method::OFT:
      j["r"] = c.nblocks;
      j["oft_block_size"] = c.block_size;
      j["use_cayley_neumann"] = c.use_cayley_neumann;
      j["num_cayley_neumann_terms"] = c.neumann_terms;
      j["module_dropout"] = 0.0;
      j["coft"] = false;
      j["block_share"] = false;
      break;
    case Method::BOFT:
      j["boft_block_size"] = c.block_size;
      j["boft_block_num"] = c.nblocks;
      j["boft_n_butterfly_factor"] = c.boft_n_butterfly_factor;
      j["boft_dropout"] = 0.0;
      break;
    case Method::LoRA:
      j["r"] = c.r;
      j["lora_alpha"] = c.lora_alpha;
      j["lora_dropout"] = c.lora_dropout;
      j["use_rslora"] = false;
      j["use_dora"] = false;
      break;
    case Method::Full: break;
  }
  return j.dump(2) + "\n";
}

AdapterConfig adapter_config_from_json(const std::string& text, const std::string& origin) {
  const auto j = parse_json<json>(text, origin);
  if (!j.is_object()) throw std::runtime_error(origin + ": expected a JSON object");
  try {
    return parse_adapter_config(j, origin);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(origin + ": " + e.what());
  }
}

static AdapterConfig parse_adapter_config(const json& j, const std::string& origin) {
  const auto type = json_field<std::string>(j, "peft_type", "", origin);
  AdapterConfig c;
  if (type == "GSOFT") {
    c.method = json_field<bool>(j, "double_gsoft", false, origin) ? Method::DoubleGSOFT : Method::GSOFT;
    c.block_size = json_field<int64_t>(j, "block_size", 0, origin);
    c.nblocks = json_field<int64_t>(j, "nblocks", 0, origin);
    if (c.block_size == 0 && c.nblocks == 0) c.block_size = 8;  // the authors' GLUE setting
    c.parametrization = parametrization_from_string(json_field<std::string>(j, "parametrization", "cayley", origin));
    c.neumann_terms = json_field<int64_t>(j, "num_cayley_neumann_terms", 5, origin);
    c.layout = layout_from_string(json_field<std::string>(j, "layout", "official", origin));
    c.scale = json_field<bool>(j, "scale", true, origin);
  } else if (type == "OFT") {
    if (!j.contains("oft_block_size"))
      throw std::runtime_error(origin + ": OFT config without 'oft_block_size' is the format before PEFT 0.14, "
                                        "which PEFT itself no longer loads");
    c.method = Method::OFT;
    c.nblocks = json_field<int64_t>(j, "r", 0, origin);
    c.block_size = json_field<int64_t>(j, "oft_block_size", 32, origin);
    if (c.nblocks > 0 && c.block_size > 0) c.block_size = 0;  // PEFT: r wins when both are set
    c.use_cayley_neumann = json_field<bool>(j, "use_cayley_neumann", true, origin);
    c.neumann_terms = json_field<int64_t>(j, "num_cayley_neumann_terms", 5, origin);
    if (json_field<bool>(j, "coft", false, origin) || json_field<bool>(j, "block_share", false, origin))
      throw std::runtime_error(origin + ": OFT with coft or block_share is not supported");
  } else if (type == "BOFT") {
    c.method = Method::BOFT;
    c.block_size = json_field<int64_t>(j, "boft_block_size", 4, origin);
    c.nblocks = json_field<int64_t>(j, "boft_block_num", 0, origin);
    if (c.nblocks > 0 && c.block_size > 0)
      throw std::runtime_error(origin + ": set only one of boft_block_size (" + std::to_string(c.block_size) +
                               ") and boft_block_num (" + std::to_string(c.nblocks) + ")");
    c.boft_n_butterfly_factor = json_field<int64_t>(j, "boft_n_butterfly_factor", 1, origin);
  } else if (type == "LORA") {
    c.method = Method::LoRA;
    c.r = json_field<int64_t>(j, "r", 8, origin);
    c.lora_alpha = json_field<double>(j, "lora_alpha", 8.0, origin);
    c.lora_dropout = json_field<double>(j, "lora_dropout", 0.0, origin);
    if (json_field<bool>(j, "use_rslora", false, origin) || json_field<bool>(j, "use_dora", false, origin))
      throw std::runtime_error(origin + ": LoRA with use_rslora or use_dora is not supported");
  } else if (type == "FULL") {
    c.method = Method::Full;
  } else {
    throw std::runtime_error(origin + ": unknown peft_type '" + type + "'; expected one of: GSOFT, OFT, BOFT, LORA, FULL");
  }
  if (j.contains("target_modules") && j["target_modules"].is_string())
    c.target_regex = j["target_modules"].get<std::string>();
  else
    c.target_modules = json_field<std::vector<std::string>>(j, "target_modules", {}, origin);
  c.exclude_modules = json_field<std::vector<std::string>>(j, "exclude_modules", {}, origin);
  c.modules_to_save = json_field<std::vector<std::string>>(j, "modules_to_save", {}, origin);
  c.init_weights = !j.contains("init_weights") || !j["init_weights"].is_boolean() || j["init_weights"].get<bool>();
  const auto bias = json_field<std::string>(j, "bias", "none", origin);
  if (bias != "none") throw std::runtime_error(origin + ": bias '" + bias + "' is not supported; expected 'none'");
  c.validate();
  return c;
}

void save_adapter(const std::string& dir, torch::nn::Module& root, const AdapterConfig& config) {
  std::map<std::string, torch::Tensor> tensors;
  for_each_adapted_layer(root, [&](const std::string& path, AdaptableLayer& layer) {
    for (const auto& [name, t] : layer.adapter()->named_parameters())
      tensors[kPeftKeyPrefix + path + "." + name] = t.detach().to(torch::kFloat32).reshape(layer.peft_shape(name, t));
  });
  for (const auto& item : root.named_modules("", false)) {
    bool saved = false;
    for (const auto& s : config.modules_to_save) saved = saved || name_matches_suffix(item.key(), s);
    if (!saved) continue;
    for (const auto& p : item.value()->named_parameters())
      tensors[kPeftKeyPrefix + item.key() + "." + p.key()] = p.value().detach();
  }
  if (config.method == Method::Full)
    for (const auto& p : root.named_parameters()) tensors[kPeftKeyPrefix + p.key()] = p.value().detach();
  GSOFT_CHECK(!tensors.empty(), "save_adapter: the model holds no adapter and no modules_to_save tensors");
  write_adapter(dir, tensors, config);
}

void write_adapter(const std::string& dir, const std::map<std::string, torch::Tensor>& tensors,
                   const AdapterConfig& config) {
  config.validate();
  for (const auto& [key, t] : tensors)
    GSOFT_CHECK(key.rfind(kPeftKeyPrefix, 0) == 0, "write_adapter: tensor '", key, "' must start with '",
                kPeftKeyPrefix, "'");
  fs::create_directories(dir);
  write_safetensors((fs::path(dir) / kAdapterModelFile).string(), tensors, {{"format", "pt"}});
  write_file_atomic((fs::path(dir) / kAdapterConfigFile).string(), adapter_config_to_json(config));
}

LoadedAdapter read_adapter(const std::string& dir) {
  const auto cfg_path = fs::path(dir) / kAdapterConfigFile;
  LoadedAdapter a;
  a.config = adapter_config_from_json(read_text_file(cfg_path.string()), cfg_path.string());
  a.tensors = read_safetensors((fs::path(dir) / kAdapterModelFile).string()).tensors;
  return a;
}

AdapterTensors split_adapter_tensors(const LoadedAdapter& adapter) {
  const std::string file = kAdapterModelFile;
  const auto names = adapter_tensor_names(adapter.config);
  const std::string prefix = kPeftKeyPrefix;
  AdapterTensors out;
  for (const auto& [key, t] : adapter.tensors) {
    if (key.find(".oft_r") != std::string::npos)
      throw std::runtime_error(file + ": '" + key + "' is PEFT's OFT format before 0.16 (oft_r/oft_s), "
                                                      "which PEFT itself no longer loads");
    if (key.rfind(prefix, 0) != 0)
      throw std::runtime_error(file + ": tensor '" + key + "' does not start with '" + prefix + "'");
    const auto rest = key.substr(prefix.size());
    bool matched = false;
    for (const auto& n : names) {
      if (rest.size() > n.size() + 1 && rest.compare(rest.size() - n.size(), n.size(), n) == 0 &&
          rest[rest.size() - n.size() - 1] == '.') {
        out.modules[rest.substr(0, rest.size() - n.size() - 1)][n] = t;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    bool saved = adapter.config.method == Method::Full;
    for (const auto& s : adapter.config.modules_to_save)
      saved = saved || rest.find(s + ".") == 0 || rest.find("." + s + ".") != std::string::npos;
    if (!saved)
      throw std::runtime_error(file + ": unexpected tensor '" + key + "': not a " + to_string(adapter.config.method) +
                               " tensor and not under modules_to_save");
    out.saved[rest] = t;
  }
  for (const auto& [module, ts] : out.modules)
    for (const auto& n : names)
      if (!ts.count(n))
        throw std::runtime_error(file + ": module '" + module + "' lacks tensor '" + prefix + module + "." + n + "'");
  return out;
}

InjectionReport load_adapter(const std::string& dir, torch::nn::Module& root) {
  const auto adapter = read_adapter(dir);
  const auto file = (fs::path(dir) / kAdapterModelFile).string();
  const auto split = split_adapter_tensors(adapter);
  const auto& modules = split.modules;
  auto report = inject_adapters(root, adapter.config);
  std::map<std::string, AdaptableLayer*> layers;
  for_each_adapted_layer(root, [&](const std::string& path, AdaptableLayer& l) { layers[path] = &l; });
  for (const auto& [module, ts] : modules) {
    auto it = layers.find(module);
    if (it == layers.end())
      throw std::runtime_error(file + ": has tensors for module '" + module + "', which the model does not adapt");
    for (auto& [name, dst] : it->second->adapter()->named_parameters()) {
      auto copy = dst;
      assign(copy, ts.at(name), kPeftKeyPrefix + module + "." + name, file);
    }
  }
  for (const auto& [name, layer] : layers)
    if (!modules.count(name))
      throw std::runtime_error(file + ": has no tensors for the adapted module '" + name + "'");
  auto params = root.named_parameters();
  for (const auto& [name, t] : split.saved) {
    auto* p = params.find(name);
    if (!p) throw std::runtime_error(file + ": tensor '" + kPeftKeyPrefix + name + "' names parameter '" + name +
                                     "', which the model lacks");
    assign(*p, t, kPeftKeyPrefix + name, file);
  }
  return report;
}

std::map<std::string, torch::Tensor> merge_checkpoint(const std::map<std::string, torch::Tensor>& base,
                                                      const LoadedAdapter& adapter, MergeReport* report) {
  MergeReport local;
  MergeReport& r = report ? *report : local;
  const auto split = split_adapter_tensors(adapter);
  std::map<std::string, torch::Tensor> out = base;
  const std::string file = kAdapterModelFile;
  for (const auto& [module, ts] : split.modules) {
    const auto wkey = module + ".weight";
    auto w = base.find(wkey);
    if (w == base.end())
      throw std::runtime_error("module '" + module + "' named by the adapter is missing from the base checkpoint (no tensor '" +
                               wkey + "')");
    GSOFT_CHECK(w->second.dim() == 2 || w->second.dim() == 4, "'", wkey,
                "' in the base checkpoint: expected a linear (2-D) or conv2d (4-D) weight, got shape ",
                format_shape(w->second.sizes()));
    // A conv weight (out, in, kh, kw) is the matrix out x (in * kh * kw) to the adapter.
    auto w2 = w->second.reshape({w->second.size(0), -1}).to(torch::kFloat32);
    auto layer = make_linear_adapter(adapter.config, w2.size(1), w2.size(0), module);
    for (auto& [name, dst] : layer->named_parameters()) {
      auto copy = dst;
      assign(copy, ts.at(name), kPeftKeyPrefix + module + "." + name, file);
    }
    out[wkey] = layer->merged_weight(w2).reshape(w->second.sizes()).to(w->second.scalar_type());
    r.merged_modules.push_back(module);
  }
  for (const auto& [name, t] : split.saved) {
    auto b = base.find(name);
    if (b != base.end()) {
      GSOFT_CHECK(b->second.sizes() == t.sizes(), "modules_to_save tensor '", kPeftKeyPrefix, name, "': shape ",
                  format_shape(t.sizes()), " differs from the base's ", format_shape(b->second.sizes()));
      out[name] = t.to(b->second.scalar_type());
    } else {
      out[name] = t;
    }
    r.saved_modules_tensors.push_back(name);
  }
  r.copied_tensors = static_cast<int64_t>(base.size()) - static_cast<int64_t>(r.merged_modules.size());
  return out;
}

MergeReport merge_to(const std::string& base, const std::string& adapter_dir, const std::string& out) {
  auto checkpoint = read_checkpoint(base);
  MergeReport report;
  auto merged = merge_checkpoint(checkpoint.tensors, read_adapter(adapter_dir), &report);
  auto metadata = checkpoint.metadata;
  metadata["format"] = "pt";
  const bool to_dir = fs::is_directory(out) || fs::path(out).extension() != ".safetensors";
  if (!to_dir) {
    write_safetensors(out, merged, metadata);
    return report;
  }
  fs::create_directories(out);
  write_safetensors((fs::path(out) / "model.safetensors").string(), merged, metadata);
  if (fs::is_directory(base)) {
    for (const auto& entry : fs::directory_iterator(base)) {
      const auto name = entry.path().filename().string();
      const bool weights = entry.path().extension() == ".safetensors" || name == "model.safetensors.index.json";
      if (!entry.is_regular_file() || weights) continue;
      write_file_atomic((fs::path(out) / name).string(), read_text_file(entry.path().string()));
    }
  }
  // A trained classifier's adapter carries the config its head needs (labels, head kind).
  const fs::path head_config = fs::path(adapter_dir) / "config.json";
  if (fs::exists(head_config)) write_file_atomic((fs::path(out) / "config.json").string(), read_text_file(head_config.string()));
  return report;
}

}  // namespace gsoft::io
