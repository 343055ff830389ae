#include "gsoft/models/bow.h"

#include <torch/torch.h>

#include <sstream>
#include <unordered_map>

#include "gsoft/core/error.h"

namespace gsoft {
namespace {

std::vector<std::string> words(const std::string& t) {
  std::vector<std::string> w;
  std::istringstream in(t);
  std::string s;
  while (in >> s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    w.push_back(s);
  }
  return w;
}

torch::Tensor features(const data::Dataset& d, const std::unordered_map<std::string, int64_t>& index) {
  torch::Tensor x = torch::zeros({static_cast<int64_t>(d.examples.size()), static_cast<int64_t>(index.size())});
  auto a = x.accessor<float, 2>();
  for (size_t i = 0; i < d.examples.size(); ++i) {
    std::string text = d.examples[i].text;
    if (d.examples[i].text_pair) text += " " + *d.examples[i].text_pair;
    for (const auto& w : words(text)) {
      auto it = index.find(w);
      if (it != index.end()) a[static_cast<int64_t>(i)][it->second] = 1;
    }
  }
  return x;
}

torch::Tensor labels(const data::Dataset& d) {
  std::vector<int64_t> y;
  for (const auto& e : d.examples) y.push_back(static_cast<int64_t>(e.label));
  return torch::tensor(y, torch::kLong);
}

double accuracy(const torch::Tensor& logits, const torch::Tensor& y) {
  return logits.argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
}

}  // namespace

BowResult bow_logistic_regression(const data::Dataset& train, const data::Dataset& dev, const data::Dataset& test,
                                  const std::vector<double>& l2_grid) {
  GSOFT_CHECK(!train.regression && train.num_labels() >= 2, "bow_logistic_regression: needs a classification task");
  GSOFT_CHECK(!train.examples.empty() && !dev.examples.empty() && !test.examples.empty(),
              "bow_logistic_regression: train, dev and test must be non-empty");
  std::unordered_map<std::string, int64_t> counts, index;
  for (const auto& e : train.examples)
    for (const auto& w : words(e.text + (e.text_pair ? " " + *e.text_pair : ""))) ++counts[w];
  for (const auto& [w, n] : counts)
    if (n >= 2) index.emplace(w, static_cast<int64_t>(index.size()));
  const torch::Tensor xt = features(train, index), xd = features(dev, index), xs = features(test, index);
  const torch::Tensor yt = labels(train), yd = labels(dev), ys = labels(test);
  BowResult best;
  best.features = static_cast<int64_t>(index.size());
  best.dev_accuracy = -1;
  for (double l2 : l2_grid) {
    torch::manual_seed(0);
    auto w = torch::zeros({xt.size(1), train.num_labels()}, torch::requires_grad());
    auto b = torch::zeros({train.num_labels()}, torch::requires_grad());
    torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(200).line_search_fn("strong_wolfe"));
    auto closure = [&] {
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(xt.matmul(w) + b, yt) + l2 * w.pow(2).sum();
      loss.backward();
      return loss;
    };
    opt.step(closure);
    torch::NoGradGuard g;
    const double dev_acc = accuracy(xd.matmul(w) + b, yd);
    if (dev_acc > best.dev_accuracy) {
      best.dev_accuracy = dev_acc;
      best.test_accuracy = accuracy(xs.matmul(w) + b, ys);
      best.l2 = l2;
    }
  }
  return best;
}

}  // namespace gsoft
