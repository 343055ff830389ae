#pragma once
// A bag-of-words logistic regression: the reference baseline for text classification. Features
// are the presence of each word (lower-cased, split on whitespace) seen at least twice in the
// training texts; the L2 strength is chosen on the dev set.
#include <vector>

#include "gsoft/data/tasks.h"

namespace gsoft {

struct BowResult {
  double dev_accuracy = 0, test_accuracy = 0;
  double l2 = 0;          // the chosen strength
  int64_t features = 0;
};

BowResult bow_logistic_regression(const data::Dataset& train, const data::Dataset& dev, const data::Dataset& test,
                                  const std::vector<double>& l2_grid = {1e-4, 1e-3, 1e-2});

}  // namespace gsoft
