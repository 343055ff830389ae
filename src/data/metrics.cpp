#include "gsoft/data/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace gsoft::data {
namespace {
void check(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    throw std::invalid_argument("metric: " + std::to_string(a.size()) + " predictions for " + std::to_string(b.size()) +
                                " references");
  if (a.empty()) throw std::invalid_argument("metric: no examples");
}
}  // namespace

double accuracy(const std::vector<double>& pred, const std::vector<double>& gold) {
  check(pred, gold);
  size_t right = 0;
  for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == gold[i];
  return static_cast<double>(right) / static_cast<double>(pred.size());
}

double f1_binary(const std::vector<double>& pred, const std::vector<double>& gold) {
  check(pred, gold);
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    tp += pred[i] == 1 && gold[i] == 1;
    fp += pred[i] == 1 && gold[i] != 1;
    fn += pred[i] != 1 && gold[i] == 1;
  }
  return tp == 0 ? 0.0 : 2 * tp / (2 * tp + fp + fn);
}

double matthews_corrcoef(const std::vector<double>& pred, const std::vector<double>& gold) {
  check(pred, gold);
  const int64_t k = static_cast<int64_t>(std::max(*std::max_element(pred.begin(), pred.end()),
                                                  *std::max_element(gold.begin(), gold.end()))) + 1;
  std::vector<double> t(k, 0), p(k, 0);
  double c = 0;
  const double s = static_cast<double>(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    t[static_cast<size_t>(gold[i])] += 1;
    p[static_cast<size_t>(pred[i])] += 1;
    c += pred[i] == gold[i];
  }
  double tp = 0, pp = 0, tt = 0;
  for (int64_t j = 0; j < k; ++j) tp += t[j] * p[j], pp += p[j] * p[j], tt += t[j] * t[j];
  const double den = std::sqrt((s * s - pp) * (s * s - tt));
  return den == 0 ? 0.0 : (c * s - tp) / den;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  check(x, y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return (sxx == 0 || syy == 0) ? 0.0 : sxy / std::sqrt(sxx * syy);
}

namespace {
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (size_t k = i; k <= j; ++k) r[order[k]] = avg;
    i = j + 1;
  }
  return r;
}
}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  check(x, y);
  return pearson(ranks(x), ranks(y));
}

double compute_metric(Metric m, const std::vector<double>& pred, const std::vector<double>& gold) {
  switch (m) {
    case Metric::Accuracy: return accuracy(pred, gold);
    case Metric::F1: return f1_binary(pred, gold);
    case Metric::Matthews: return matthews_corrcoef(pred, gold);
    case Metric::Pearson: return pearson(pred, gold);
    case Metric::Spearman: return spearman(pred, gold);
  }
  throw std::invalid_argument("unknown metric");
}

std::map<std::string, double> compute_metrics(const std::vector<Metric>& metrics, const std::vector<double>& pred,
                                              const std::vector<double>& gold) {
  std::map<std::string, double> out;
  for (Metric m : metrics) out[to_string(m)] = compute_metric(m, pred, gold);
  return out;
}

}  // namespace gsoft::data
