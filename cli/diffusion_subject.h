#pragma once
// The subject of a DreamBooth run, shared by dreambooth and eval-subject: an item of the
// Fashion-MNIST test set (--subject-fmnist) or a few 32x32 greyscale photos (--subject-images with
// --class).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diffusion_common.h"
#include "gsoft/train/dreambooth.h"

namespace gsoft::cli {

struct SubjectOptions {
  int64_t fmnist_index = -1;
  std::vector<std::string> images;
  std::string class_name, token = "sks", data;
  int64_t views = 5;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--subject-fmnist", fmnist_index, "The subject: this item of the Fashion-MNIST test set (0-9999)")
        ->check(CLI::Range(0, 9999));
    cmd->add_option("--subject-images", images, "The subject: 32x32 greyscale PNG photos (with --class)");
    cmd->add_option("--class", class_name, "The subject's class with --subject-images (t-shirt, ..., ankle boot)");
    cmd->add_option("--token", token, "The subject token of the prompts")->capture_default_str();
    cmd->add_option("--views", views, "Photos made of a Fashion-MNIST item (each shifted by up to 2 pixels)")
        ->capture_default_str()->check(CLI::Range(1, 9));
    cmd->add_option("--data", data, "Fashion-MNIST directory");
  }

  Subject load() const {
    if ((fmnist_index >= 0) == !images.empty())
      throw CLI::ValidationError("--subject-fmnist/--subject-images", "give exactly one of them");
    Subject s;
    s.token = token;
    data::parse_prompt("a photo of a large " + token + " bag");  // the token: one word outside the grammar
    if (fmnist_index >= 0) {
      const data::ImageDataset test = fashion_items(data, false);
      s.label = test.labels[fmnist_index].item<int64_t>();
      s.views = subject_views(test.images[fmnist_index][0], views);
      return s;
    }
    const auto& names = data::fashion_class_names();
    const auto it = std::find(names.begin(), names.end(), class_name);
    if (it == names.end()) throw CLI::ValidationError("--class", "'" + class_name + "' is not a class; expected one of the grammar's");
    s.label = it - names.begin();
    std::vector<torch::Tensor> v;
    for (const auto& f : images) {
      const io::GrayImage g = io::read_png(f);
      if (g.width != data::kSceneSide || g.height != data::kSceneSide)
        throw std::runtime_error(f + ": the subject photos must be 32x32, this one is " + std::to_string(g.width) + "x" +
                                 std::to_string(g.height));
      v.push_back(gray_tensor(g));
    }
    s.views = torch::stack(v);
    return s;
  }

  nlohmann::json describe(const Subject& s) const {
    nlohmann::json j = {{"class", data::fashion_class_names()[static_cast<size_t>(s.label)]}, {"token", s.token},
                        {"views", s.views.size(0)}};
    if (fmnist_index >= 0) j["fmnist_test_index"] = fmnist_index;
    else j["images"] = images;
    return j;
  }
};

}  // namespace gsoft::cli
