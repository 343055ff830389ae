#include "gsoft/data/fashion_scenes.h"

#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gsoft/core/error.h"

namespace gsoft::data {

const std::vector<std::string>& fashion_class_names() {
  static const std::vector<std::string> v{"t-shirt", "trouser", "pullover", "dress", "coat",
                                          "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
  return v;
}

const std::vector<Quadrant>& all_quadrants() {
  static const std::vector<Quadrant> v{Quadrant::TopLeft, Quadrant::TopRight, Quadrant::BottomLeft, Quadrant::BottomRight};
  return v;
}

std::string quadrant_phrase(Quadrant q) {
  switch (q) {
    case Quadrant::TopLeft: return "at the top left";
    case Quadrant::TopRight: return "at the top right";
    case Quadrant::BottomLeft: return "at the bottom left";
    case Quadrant::BottomRight: return "at the bottom right";
  }
  return "";
}

namespace {
int64_t quadrant_row(Quadrant q) { return q == Quadrant::BottomLeft || q == Quadrant::BottomRight ? 16 : 0; }
int64_t quadrant_col(Quadrant q) { return q == Quadrant::TopRight || q == Quadrant::BottomRight ? 16 : 0; }

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  std::string x;
  while (in >> x) w.push_back(x);
  return w;
}

bool is_grammar_word(const std::string& w) {
  static const std::vector<std::string> words{"a", "photo", "of", "large", "small", "at", "the", "top", "bottom",
                                              "left", "right", "negative", "ankle", "boot"};
  if (std::find(words.begin(), words.end(), w) != words.end()) return true;
  const auto& c = fashion_class_names();
  return std::find(c.begin(), c.end(), w) != c.end();
}
}  // namespace

torch::Tensor compose_scene(const torch::Tensor& item, const Scene& s) {
  GSOFT_CHECK(item.dim() == 2 && item.size(0) == 28 && item.size(1) == 28 && item.scalar_type() == torch::kUInt8,
              "compose_scene: expected a (28, 28) uint8 item, got ", format_shape(item.sizes()), " ", item.scalar_type());
  GSOFT_CHECK(s.label >= 0 && s.label < 10, "compose_scene: label must be 0-9, got ", s.label);
  torch::Tensor canvas = torch::zeros({kSceneSide, kSceneSide}, torch::kUInt8);
  if (s.size == ItemSize::Large) {
    canvas.narrow(0, 2, 28).narrow(1, 2, 28).copy_(item);
  } else {
    // 2x2 mean, rounded half up: (a + b + c + d + 2) / 4
    const torch::Tensor pooled = (item.to(torch::kInt32).view({14, 2, 14, 2}).sum({1, 3}) + 2).div(4, "floor").to(torch::kUInt8);
    canvas.narrow(0, quadrant_row(s.quadrant) + 1, 14).narrow(1, quadrant_col(s.quadrant) + 1, 14).copy_(pooled);
  }
  if (s.negative) canvas = 255 - canvas;
  return canvas;
}

std::string Prompt::text() const {
  if (!label) return "";
  std::string t = "a photo of a";
  if (size) t += *size == ItemSize::Large ? " large" : " small";
  if (!token.empty()) t += " " + token;
  t += " " + fashion_class_names().at(static_cast<size_t>(*label));
  if (quadrant) t += " " + quadrant_phrase(*quadrant);
  if (negative) t += ", negative";
  return t;
}

std::string prompt_grammar() {
  return "a photo of a[ {large|small}][ {token}] {class}[ {position}][, negative], where class is one of t-shirt, "
         "trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot; position (only with small) is at the "
         "top left, at the top right, at the bottom left or at the bottom right; token is one word outside the grammar "
         "(a subject token such as sks); \"\" is the unconditional prompt";
}

Prompt parse_prompt(const std::string& text) {
  auto fail = [&](const std::string& why) -> Prompt {
    throw std::invalid_argument("prompt \"" + text + "\": " + why + "; the grammar is: " + prompt_grammar());
  };
  Prompt p;
  std::string body = text;
  std::transform(body.begin(), body.end(), body.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const size_t comma = body.find(',');
  if (comma != std::string::npos) {
    const auto tail = split_words(body.substr(comma + 1));
    if (tail.size() != 1 || tail[0] != "negative") return fail("expected \", negative\" after the comma");
    p.negative = true;
    body = body.substr(0, comma);
  }
  std::vector<std::string> w = split_words(body);
  if (w.empty()) {
    if (p.negative) return fail("\", negative\" needs a class");
    return p;
  }
  const std::vector<std::string> head{"a", "photo", "of", "a"};
  for (size_t i = 0; i < head.size(); ++i)
    if (i >= w.size() || w[i] != head[i]) return fail("expected it to start with \"a photo of a\"");
  w.erase(w.begin(), w.begin() + 4);
  if (!w.empty() && (w[0] == "large" || w[0] == "small")) {
    p.size = w[0] == "large" ? ItemSize::Large : ItemSize::Small;
    w.erase(w.begin());
  }
  // A trailing "at the {top|bottom} {left|right}".
  if (w.size() >= 4 && w[w.size() - 4] == "at") {
    const std::string phrase = w[w.size() - 4] + " " + w[w.size() - 3] + " " + w[w.size() - 2] + " " + w[w.size() - 1];
    bool found = false;
    for (Quadrant q : all_quadrants())
      if (quadrant_phrase(q) == phrase) p.quadrant = q, found = true;
    if (!found) return fail("\"" + phrase + "\" is not a position");
    if (p.size != ItemSize::Small) return fail("a position needs \"small\"");
    w.resize(w.size() - 4);
  }
  // The class: the last one or two words.
  const auto& classes = fashion_class_names();
  for (size_t n : {size_t{2}, size_t{1}}) {
    if (w.size() < n) continue;
    std::string name = w[w.size() - n];
    if (n == 2) name += " " + w.back();
    auto it = std::find(classes.begin(), classes.end(), name);
    if (it != classes.end()) {
      p.label = it - classes.begin();
      w.resize(w.size() - n);
      break;
    }
  }
  if (!p.label) return fail("expected a class name" + std::string(w.empty() ? "" : ", found \"" + w.back() + "\""));
  if (w.size() > 1) return fail("expected at most one subject token before the class, found \"" + w[0] + " " + w[1] + "\"");
  if (w.size() == 1) {
    if (is_grammar_word(w[0])) return fail("\"" + w[0] + "\" is not allowed before the class");
    p.token = w[0];
  }
  return p;
}

Prompt scene_prompt(const Scene& s) {
  Prompt p;
  p.label = s.label;
  p.size = s.size;
  if (s.size == ItemSize::Small) p.quadrant = s.quadrant;
  p.negative = s.negative;
  return p;
}

std::string training_caption(const Scene& s, const CaptionDropout& d, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double drop_caption = u(rng), drop_size = u(rng), drop_position = u(rng);
  if (drop_caption < d.caption) return "";
  Prompt p = scene_prompt(s);
  if (drop_size < d.size) {
    p.size.reset();
    p.quadrant.reset();
  } else if (p.quadrant && drop_position < d.position) {
    p.quadrant.reset();
  }
  return p.text();
}

BatchAttributes measure_attributes_batch(const torch::Tensor& canvases, double small_share) {
  const torch::Tensor c = canvases.dim() == 4 ? canvases.squeeze(1) : canvases;
  GSOFT_CHECK(c.dim() == 3 && c.size(1) == kSceneSide && c.size(2) == kSceneSide && c.scalar_type() == torch::kUInt8,
              "measure_attributes: expected (32, 32) uint8 canvases, got ", format_shape(canvases.sizes()), " ",
              canvases.scalar_type());
  const torch::Tensor v = c.to(torch::kFloat64);
  const int64_t S = kSceneSide;
  const torch::Tensor ring = (v.select(1, 0).sum(1) + v.select(1, S - 1).sum(1) + v.select(2, 0).narrow(1, 1, S - 2).sum(1) +
                              v.select(2, S - 1).narrow(1, 1, S - 2).sum(1)) /
                             (4.0 * (S - 1));
  BatchAttributes a;
  a.negative = ring > 127.5;
  const torch::Tensor ink = torch::where(a.negative.view({-1, 1, 1}), 255.0 - v, v);
  // Quadrant masses in the order top left, top right, bottom left, bottom right.
  const torch::Tensor mass = ink.view({-1, 2, 16, 2, 16}).sum({2, 4}).reshape({-1, 4});
  const auto best = mass.max(1);
  a.quadrant = std::get<1>(best);
  const torch::Tensor total = mass.sum(1);
  a.small = (total > 0) & (std::get<0>(best) >= small_share * total);
  return a;
}

SceneAttributes measure_attributes(const torch::Tensor& canvas, double small_share) {
  GSOFT_CHECK(canvas.dim() == 2 || (canvas.dim() == 3 && canvas.size(0) == 1), "measure_attributes: expected one canvas, got ",
              format_shape(canvas.sizes()));
  const BatchAttributes b = measure_attributes_batch(canvas.reshape({1, canvas.size(-2), canvas.size(-1)}), small_share);
  SceneAttributes a;
  a.negative = b.negative[0].item<bool>();
  a.size = b.small[0].item<bool>() ? ItemSize::Small : ItemSize::Large;
  a.quadrant = all_quadrants()[static_cast<size_t>(b.quadrant[0].item<int64_t>())];
  return a;
}

torch::Tensor canonical_scenes(const torch::Tensor& canvases) {
  const torch::Tensor c = canvases.dim() == 4 ? canvases.squeeze(1) : canvases;
  const BatchAttributes a = measure_attributes_batch(c);
  const torch::Tensor positive = torch::where(a.negative.view({-1, 1, 1}), 255 - c, c);
  const torch::Tensor quadrants = positive.view({-1, 2, 16, 2, 16}).permute({0, 1, 3, 2, 4}).reshape({-1, 4, 16, 16});
  const torch::Tensor picked = quadrants.gather(1, a.quadrant.view({-1, 1, 1, 1}).expand({-1, 1, 16, 16})).squeeze(1);
  const torch::Tensor enlarged = picked.repeat_interleave(2, 1).repeat_interleave(2, 2);
  return torch::where(a.small.view({-1, 1, 1}), enlarged, positive);
}

bool attributes_match(const Prompt& p, const SceneAttributes& m) {
  if (p.negative != m.negative) return false;
  if (p.size && *p.size != m.size) return false;
  if (p.quadrant && *p.quadrant != m.quadrant) return false;
  return true;
}

const std::vector<std::string>& default_rare_tokens() {
  static const std::vector<std::string> v{"sks", "zwx", "qrv", "vlp", "bnk", "dqx", "ktz", "wmf"};
  return v;
}

std::string scene_tokenizer_json(const std::vector<std::string>& rare_tokens) {
  nlohmann::json vocab = nlohmann::json::object();
  int64_t id = 0;
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) vocab[s] = id++;
  for (const char* s : {"a", "photo", "of", "large", "small", "at", "the", "top", "bottom", "left", "right", ",",
                        "negative", "t", "-", "shirt", "trouser", "pullover", "dress", "coat", "sandal", "sneaker", "bag",
                        "ankle", "boot"})
    vocab[s] = id++;
  for (const auto& t : rare_tokens) {
    GSOFT_CHECK(!t.empty() && !vocab.contains(t), "rare token '", t, "' is empty or already in the vocabulary");
    vocab[t] = id++;
  }
  nlohmann::json added = nlohmann::json::array();
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    added.push_back({{"id", vocab[s]}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  const nlohmann::json t = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                      {"strip_accents", nullptr}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "BertProcessing"}, {"cls", {"[CLS]", vocab["[CLS]"]}}, {"sep", {"[SEP]", vocab["[SEP]"]}}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                 {"max_input_chars_per_word", 100}, {"vocab", vocab}}}};
  return t.dump(2) + "\n";
}

}  // namespace gsoft::data
