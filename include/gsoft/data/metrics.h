#pragma once
// The GLUE metrics. Predictions and references are class indices (as doubles) or regression values.
#include <map>
#include <string>
#include <vector>

#include "gsoft/data/tasks.h"

namespace gsoft::data {

double accuracy(const std::vector<double>& pred, const std::vector<double>& gold);
// Binary F1 of class 1.
double f1_binary(const std::vector<double>& pred, const std::vector<double>& gold);
// Matthews correlation (the multi-class form, as scikit-learn); 0 when undefined.
double matthews_corrcoef(const std::vector<double>& pred, const std::vector<double>& gold);
double pearson(const std::vector<double>& x, const std::vector<double>& y);
// Pearson of the ranks, ties given their average rank.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

double compute_metric(Metric m, const std::vector<double>& pred, const std::vector<double>& gold);
std::map<std::string, double> compute_metrics(const std::vector<Metric>& metrics, const std::vector<double>& pred,
                                              const std::vector<double>& gold);

}  // namespace gsoft::data
