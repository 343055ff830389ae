// gsoft baseline: the bag-of-words logistic regression on the main job's polarity split.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "polarity.h"
#include "gsoft/models/bow.h"

namespace gsoft::cli {

void setup_baseline(CLI::App& app, Runners& runners) {
  auto data = std::make_shared<std::string>(kPolarityData);
  auto* cmd = app.add_subcommand(
      "baseline",
      "Bag-of-words logistic regression (word presence, L2 chosen on dev) on the polarity task's fixed split,\n"
      "the reference for gsoft quickstart. Prints one JSON object.");
  cmd->add_option("--data", *data, "polarity-en-pang&lee2.csv")->capture_default_str();
  runners.push_back({cmd, [data] {
                       const data::Split s = read_polarity_split(*data);
                       const BowResult r = bow_logistic_regression(s.train, s.dev, s.test);
                       std::cout << nlohmann::json{{"model", "bow_logistic_regression"}, {"features", r.features},
                                                   {"l2", r.l2}, {"dev_accuracy", r.dev_accuracy},
                                                   {"test_accuracy", r.test_accuracy}}.dump()
                                 << std::endl;
                     }});
}

}  // namespace gsoft::cli
