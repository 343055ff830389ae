#include "gsoft/train/batching.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "gsoft/core/error.h"
#include "gsoft/models/encoder.h"

namespace gsoft {

std::vector<EncodedExample> encode_dataset(const Tokenizer& tokenizer, const data::Dataset& dataset, int64_t max_length) {
  std::vector<EncodedExample> out;
  out.reserve(dataset.examples.size());
  for (const auto& e : dataset.examples) {
    Encoding enc = tokenizer.encode(e.text, e.text_pair, max_length);
    out.push_back({std::move(enc.ids), std::move(enc.type_ids), e.label});
  }
  return out;
}

Batch collate(const std::vector<EncodedExample>& examples, const std::vector<size_t>& indices, const BatchOptions& o) {
  GSOFT_CHECK(!indices.empty(), "collate: empty batch");
  size_t t = 1;
  for (size_t i : indices) {
    GSOFT_CHECK(i < examples.size(), "collate: example ", i, " of ", examples.size());
    t = std::max(t, examples[i].ids.size());
  }
  const auto b = static_cast<int64_t>(indices.size());
  const auto T = static_cast<int64_t>(t);
  Batch batch;
  batch.input_ids = torch::full({b, T}, o.pad_id, torch::kLong);
  batch.attention_mask = torch::zeros({b, T}, torch::kLong);
  torch::Tensor types = torch::zeros({b, T}, torch::kLong);
  batch.labels = torch::empty({b}, o.regression ? torch::kFloat : torch::kLong);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto ty = types.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const EncodedExample& e = examples[indices[static_cast<size_t>(r)]];
    for (size_t c = 0; c < e.ids.size(); ++c) {
      ids[r][static_cast<int64_t>(c)] = e.ids[c];
      mask[r][static_cast<int64_t>(c)] = 1;
      ty[r][static_cast<int64_t>(c)] = c < e.type_ids.size() ? e.type_ids[c] : 0;
    }
    if (o.regression) batch.labels[r] = e.label;
    else batch.labels[r] = static_cast<int64_t>(e.label);
  }
  if (o.token_types) batch.token_type_ids = types;
  return batch;
}

torch::Tensor predict_logits(SequenceClassifierImpl& model, const std::vector<EncodedExample>& examples,
                             int64_t batch_size, const BatchOptions& options) {
  GSOFT_CHECK(batch_size > 0, "predict: batch_size must be positive, got ", batch_size);
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return examples[a].ids.size() < examples[b].ids.size(); });
  torch::Tensor out;
  for (size_t begin = 0; begin < order.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    std::vector<size_t> idx(order.begin() + static_cast<std::ptrdiff_t>(begin), order.begin() + static_cast<std::ptrdiff_t>(end));
    const Batch b = collate(examples, idx, options);
    torch::Tensor logits = model.forward(b.input_ids, b.attention_mask, b.token_type_ids).to(torch::kFloat);
    if (!out.defined()) out = torch::empty({static_cast<int64_t>(examples.size()), logits.size(1)}, torch::kFloat);
    out.index_copy_(0, torch::tensor(std::vector<int64_t>(idx.begin(), idx.end()), torch::kLong), logits);
  }
  model.train(was_training);
  if (!out.defined()) out = torch::empty({0, model.config.num_labels}, torch::kFloat);
  return out;
}

std::vector<double> predictions_from_logits(const torch::Tensor& logits) {
  torch::Tensor p = logits.size(1) == 1 ? logits.select(1, 0) : logits.argmax(1);
  p = p.to(torch::kDouble).contiguous();
  return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
}

}  // namespace gsoft
