#include "gsoft/train/pretrain.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "gsoft/core/error.h"
#include "gsoft/dist/group.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/word_vectors.h"
#include "gsoft/train/optim.h"
#include "train/run_state.h"

namespace gsoft {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<std::vector<int64_t>> pack_sequences(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                                                 int64_t seq_len) {
  GSOFT_CHECK(seq_len >= 8, "pack_sequences: seq_len must be at least 8, got ", seq_len);
  const auto cls = tokenizer.token_to_id("[CLS]"), sep = tokenizer.token_to_id("[SEP]");
  GSOFT_CHECK(cls && sep, tokenizer.origin(), ": pretraining needs [CLS] and [SEP] tokens");
  const size_t body = static_cast<size_t>(seq_len - 2);
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> cur;
  auto flush = [&] {
    if (cur.empty()) return;
    std::vector<int64_t> s{*cls};
    s.insert(s.end(), cur.begin(), cur.end());
    s.push_back(*sep);
    out.push_back(std::move(s));
    cur.clear();
  };
  for (const auto& t : texts) {
    for (int64_t id : tokenizer.encode(t, std::nullopt, 0, /*add_special_tokens=*/false).ids) {
      cur.push_back(id);
      if (cur.size() == body) flush();
    }
  }
  flush();
  return out;
}

namespace {

json fingerprint(const PretrainOptions& o, size_t n) {
  return {{"max_steps", o.max_steps}, {"batch_size", o.batch_size}, {"lr", o.lr}, {"weight_decay", o.weight_decay},
          {"warmup_ratio", o.warmup_ratio}, {"mask_probability", o.mask_probability}, {"seed", o.seed},
          {"sequences", n}, {"masks", "per-step generator"}};
}

struct MaskedBatch {
  torch::Tensor input_ids, attention_mask, positions, targets;
};

// BERT's masking of a whole global batch, drawn from `gen` alone: a generator seeded by the step
// gives every rank the same masks whatever the rank count, and a resumed run the same masks.
MaskedBatch mask_batch(const std::vector<std::vector<int64_t>>& seqs, const std::vector<size_t>& idx, int64_t pad,
                       int64_t mask_id, int64_t vocab, int64_t first_regular, double p, at::Generator gen) {
  size_t t = 0;
  for (size_t i : idx) t = std::max(t, seqs[i].size());
  const auto B = static_cast<int64_t>(idx.size()), T = static_cast<int64_t>(t);
  torch::Tensor ids = torch::full({B, T}, pad, torch::kLong), attn = torch::zeros({B, T}, torch::kLong);
  auto a = ids.accessor<int64_t, 2>();
  auto m = attn.accessor<int64_t, 2>();
  for (int64_t r = 0; r < B; ++r) {
    const auto& s = seqs[idx[static_cast<size_t>(r)]];
    for (size_t c = 0; c < s.size(); ++c) a[r][static_cast<int64_t>(c)] = s[c], m[r][static_cast<int64_t>(c)] = 1;
  }
  // Special tokens (ids below first_regular) and padding are never predicted.
  const torch::Tensor candidate = ids.ge(first_regular).logical_and(attn.to(torch::kBool));
  torch::Tensor chosen = torch::rand({B, T}, gen).lt(p).logical_and(candidate);
  if (!chosen.any().item<bool>()) chosen = candidate.logical_and(torch::zeros_like(candidate)).index_put_({0, 1}, true);
  const torch::Tensor flat = chosen.reshape(-1).nonzero().reshape(-1);
  const torch::Tensor targets = ids.reshape(-1).index_select(0, flat);
  const torch::Tensor u = torch::rand({flat.size(0)}, gen);
  torch::Tensor input = ids.reshape(-1).clone();
  input.index_put_({flat.index({u.lt(0.8)})}, mask_id);
  const torch::Tensor random_pos = flat.index({u.ge(0.8).logical_and(u.lt(0.9))});
  input.index_put_({random_pos}, torch::randint(first_regular, vocab, {random_pos.size(0)}, gen, torch::kLong));
  return {input.reshape({B, T}), attn, flat, targets};
}

// Rows [r0, r1) of a masked batch, with the positions of their masked tokens renumbered.
MaskedBatch rows_of(const MaskedBatch& b, int64_t r0, int64_t r1) {
  const int64_t T = b.input_ids.size(1);
  const torch::Tensor keep = b.positions.ge(r0 * T).logical_and(b.positions.lt(r1 * T));
  return {b.input_ids.narrow(0, r0, r1 - r0), b.attention_mask.narrow(0, r0, r1 - r0),
          b.positions.index({keep}) - r0 * T, b.targets.index({keep})};
}

}  // namespace

PretrainResult pretrain_mlm(MaskedLMImpl& model, const Tokenizer& tokenizer, const std::vector<std::vector<int64_t>>& seqs,
                            const PretrainOptions& o, const TrainCallbacks& cb) {
  GSOFT_CHECK(!o.out_dir.empty(), "pretrain: out_dir is required");
  GSOFT_CHECK(!seqs.empty(), "pretrain: no sequences");
  GSOFT_CHECK(o.max_steps > 0 && o.batch_size > 0, "pretrain: max_steps and batch_size must be positive, got ", o.max_steps,
              " and ", o.batch_size);
  const auto mask_id = tokenizer.token_to_id("[MASK]");
  GSOFT_CHECK(mask_id, tokenizer.origin(), ": pretraining needs a [MASK] token");
  GSOFT_CHECK(tokenizer.vocab_size() <= model.config.vocab_size, "pretrain: the tokenizer has ", tokenizer.vocab_size(),
              " ids, the model's vocab_size is ", model.config.vocab_size);
  // Special tokens come first in gsoft's and BERT's vocabularies: [PAD] [UNK] [CLS] [SEP] [MASK].
  int64_t first_regular = 0;
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    if (auto id = tokenizer.token_to_id(s)) first_regular = std::max(first_regular, *id + 1);

  const fs::path out(o.out_dir);
  dist::Group solo(dist::DistOptions{});
  dist::Group& group = o.group ? *o.group : solo;
  const bool writer = group.is_main();  // rank 0 alone writes the run directory
  if (writer) fs::create_directories(out);
  std::map<std::string, torch::Tensor> params;
  ParamGroup decay{"decay", {}, o.lr, o.weight_decay}, no_decay{"no_decay", {}, o.lr, 0};
  for (const auto& p : model.named_parameters()) {
    params[p.key()] = p.value();
    const bool nd = p.key().find("LayerNorm") != std::string::npos || p.key().find("layer_norm") != std::string::npos ||
                    (p.key().size() >= 4 && p.key().compare(p.key().size() - 4, 4, "bias") == 0);
    (nd ? no_decay : decay).params.emplace_back(p.key(), p.value());
  }
  AdamW optimizer({decay, no_decay});
  std::vector<torch::Tensor> trainable;
  for (const auto& [n, p] : params) trainable.push_back(p);
  const json print = fingerprint(o, seqs.size());
  group.check_same("pretraining options", print.dump());
  const fs::path ckpt = out / "checkpoint.safetensors", log = out / "metrics.jsonl";
  PretrainResult r;
  r.total_steps = o.max_steps;
  int64_t step =
      train_detail::start_or_resume(o.out_dir, o.resume, params, optimizer, print, o.max_steps, cb.on_event, writer);
  dist::check_start(group, step, ckpt.string());
  if (step == 0) {
    torch::manual_seed(o.seed);  // dropout's stream; a resumed run has the checkpoint's RNG state
    group.broadcast(trainable);  // replicas start equal
  }
  // Each rank draws its own dropout masks.
  if (group.world_size() > 1) torch::manual_seed(train_detail::step_seed(o.seed, step, 100 + static_cast<uint32_t>(group.rank())));
  r.start_step = r.end_step = step;
  const int64_t n = static_cast<int64_t>(seqs.size());
  const int64_t per_epoch = std::max<int64_t>(1, n / o.batch_size);  // full batches only
  const int64_t warmup = static_cast<int64_t>(std::llround(o.warmup_ratio * static_cast<double>(o.max_steps)));
  std::vector<size_t> order;
  int64_t order_epoch = -1;
  const auto t0 = std::chrono::steady_clock::now();
  model.train();
  // stop_at_step ends the run early without changing the schedule, which max_steps defines.
  const int64_t end = o.stop_at_step > 0 ? std::min(o.stop_at_step, o.max_steps) : o.max_steps;
  dist::GradReducer reducer(group, trainable);  // sums the gradients as the backward makes them
  while (step < end) {
    const int64_t epoch = step / per_epoch, pos = step % per_epoch;
    if (epoch != order_epoch) order = train_detail::epoch_order(seqs.size(), o.seed, epoch), order_epoch = epoch;
    const size_t b0 = static_cast<size_t>(pos * o.batch_size);
    const std::vector<size_t> idx(order.begin() + static_cast<std::ptrdiff_t>(b0),
                                  order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), b0 + static_cast<size_t>(o.batch_size))));
    const MaskedBatch global = mask_batch(seqs, idx, tokenizer.pad_id(), *mask_id, tokenizer.vocab_size(), first_regular,
                                          o.mask_probability, at::detail::createCPUGenerator(train_detail::step_seed(o.seed, step, 1)));
    // This rank's rows; its mean loss is weighted by its share of the global batch's masked tokens.
    const auto [s0, s1] = dist::shard_range(idx.size(), group.rank(), group.world_size());
    const MaskedBatch b = rows_of(global, static_cast<int64_t>(s0), static_cast<int64_t>(s1));
    optimizer.zero_grad();
    double lv = 0;
    if (b.targets.numel() > 0) {
      torch::Tensor loss =
          torch::nn::functional::cross_entropy(model.forward(b.input_ids, b.attention_mask, b.positions), b.targets);
      loss = dist::share_weighted(group, loss, b.targets.numel(), global.targets.numel());
      lv = loss.item<double>();
      loss.backward();
    }
    lv = reducer.finish({lv})[0];
    train_detail::check_finite_loss(lv, step + 1, "pretraining", ckpt.string());
    const double norm = clip_grad_norm(trainable, o.max_grad_norm);
    const double factor = linear_schedule(step, warmup, o.max_steps);
    optimizer.step(factor);
    ++step;
    r.end_step = step;
    r.losses.push_back(lv);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInfo info{step, o.max_steps, epoch + 1, (o.max_steps + per_epoch - 1) / per_epoch, lv, o.lr * factor, norm,
                  static_cast<double>(step - r.start_step) / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = static_cast<double>(end - step) / std::max(info.steps_per_second, 1e-9);
    if (writer && o.log_every > 0 && (step % o.log_every == 0 || step == end)) {
      train_detail::append_jsonl(log.string(), {{"type", "train"}, {"step", step}, {"loss", lv}, {"lr", info.lr},
                                                {"grad_norm", norm}});
    }
    if (cb.on_step) cb.on_step(info);
    const bool stop = dist::any_rank(group, cb.should_stop && cb.should_stop());
    if (writer && (stop || step == end || (o.checkpoint_every > 0 && step % o.checkpoint_every == 0))) {
      train_detail::save_run_state(ckpt.string(), params, optimizer, step, print);
      if (cb.on_event) cb.on_event("checkpoint at step " + std::to_string(step));
    }
    if (stop && step < end) {
      r.interrupted = true;
      break;
    }
  }
  r.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.all_reduce_bytes = group.stats().all_reduce_bytes;
  r.all_reduce_seconds = group.stats().all_reduce_seconds;
  return r;
}

int64_t init_word_embeddings(MaskedLMImpl& model, const Tokenizer& tokenizer, const WordVectors& vectors,
                             double mean_norm, uint64_t seed) {
  GSOFT_CHECK(vectors.dim > 0, "init_word_embeddings: no word vectors");
  GSOFT_CHECK(mean_norm > 0, "init_word_embeddings: mean_norm must be positive, got ", mean_norm);
  torch::Tensor emb = model.encoder->named_parameters()["embeddings.word_embeddings.weight"];
  const int64_t hidden = emb.size(1), dim = vectors.dim;
  std::vector<int64_t> rows;
  std::vector<float> values;
  for (int64_t id = 0; id < std::min(tokenizer.vocab_size(), emb.size(0)); ++id) {
    const std::string& t = tokenizer.id_to_token(id);
    if (t.rfind("##", 0) == 0 || (t.size() > 2 && t.front() == '[' && t.back() == ']')) continue;
    auto it = vectors.vectors.find(t);
    if (it == vectors.vectors.end()) continue;
    rows.push_back(id);
    values.insert(values.end(), it->second.begin(), it->second.end());
  }
  if (rows.empty()) return 0;
  const auto n = static_cast<int64_t>(rows.size());
  const torch::Tensor v = torch::from_blob(values.data(), {n, dim}, torch::kFloat).to(torch::kDouble);
  auto gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor a = torch::randn({std::max(dim, hidden), std::min(dim, hidden)}, gen, torch::kDouble);
  const torch::Tensor q = std::get<0>(torch::linalg_qr(a));  // orthonormal columns
  const torch::Tensor map = dim <= hidden ? q.t() : q;          // (dim, hidden)
  torch::Tensor mapped = v.matmul(map);
  mapped = mapped * (mean_norm / mapped.norm(2, 1).mean().clamp_min(1e-12));
  torch::NoGradGuard g;
  emb.index_copy_(0, torch::tensor(rows, torch::kLong), mapped.to(emb.scalar_type()));
  return n;
}

void save_pretrained(MaskedLMImpl& model, const std::string& dir) {
  fs::create_directories(dir);
  std::map<std::string, torch::Tensor> t;
  for (const auto& p : model.named_parameters()) t[p.key()] = p.value().detach().contiguous();
  io::write_safetensors((fs::path(dir) / "model.safetensors").string(), t, {{"format", "pt"}});
  const EncoderConfig& c = model.config;
  const json config = {{"architectures", {c.is_roberta() ? "RobertaForMaskedLM" : "BertForMaskedLM"}},
                       {"model_type", c.model_type}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                       {"num_hidden_layers", c.num_hidden_layers}, {"num_attention_heads", c.num_attention_heads},
                       {"intermediate_size", c.intermediate_size}, {"hidden_act", c.hidden_act},
                       {"max_position_embeddings", c.max_position_embeddings}, {"type_vocab_size", c.type_vocab_size},
                       {"layer_norm_eps", c.layer_norm_eps}, {"pad_token_id", c.pad_token_id},
                       {"hidden_dropout_prob", c.hidden_dropout_prob},
                       {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}};
  io::write_file_atomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

}  // namespace gsoft
