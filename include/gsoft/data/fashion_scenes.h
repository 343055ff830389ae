#pragma once
// Captioned Fashion-MNIST scenes: a 28x28 item composed on a 32x32 greyscale canvas (background 0)
// with attributes that the caption states. The grammar is part of gsoft's interface:
//
//   a photo of a[ {size}][ {token}] {class}[ {position}][, negative]
//
//   size      large: the item centred (2-pixel border); small: the item 2x2-mean-pooled to 14x14,
//             at offset (1,1) inside one 16x16 quadrant
//   class     t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot
//             (Fashion-MNIST labels 0-9)
//   position  only after "small": at the top left | at the top right | at the bottom left |
//             at the bottom right
//   negative  the whole canvas inverted (255 - v)
//   token     one word outside the grammar (a subject token such as "sks"; never in training)
//
// A prompt may leave the size (and so the position) or the position open; without ", negative"
// the canvas is positive. The empty prompt is the unconditional one (classifier-free guidance).
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace gsoft::data {

enum class ItemSize { Large, Small };
enum class Quadrant { TopLeft, TopRight, BottomLeft, BottomRight };

constexpr int64_t kSceneSide = 32;

const std::vector<std::string>& fashion_class_names();  // by label 0-9
std::string quadrant_phrase(Quadrant q);                // "at the top left", ...
const std::vector<Quadrant>& all_quadrants();

struct Scene {
  int64_t label = 0;
  ItemSize size = ItemSize::Large;
  Quadrant quadrant = Quadrant::TopLeft;  // used when small
  bool negative = false;
};

// item: (28, 28) uint8 -> (32, 32) uint8 canvas. Throws for another shape or dtype.
torch::Tensor compose_scene(const torch::Tensor& item, const Scene& scene);

struct Prompt {
  std::optional<int64_t> label;   // empty only for the unconditional prompt ""
  std::optional<ItemSize> size;
  std::optional<Quadrant> quadrant;
  bool negative = false;
  std::string token;              // the subject token, or empty
  std::string text() const;       // the prompt in the grammar
};

std::string prompt_grammar();  // the grammar above, for messages and --help
// Throws std::invalid_argument quoting the prompt, saying what was expected where, and giving the
// grammar. "" parses as the unconditional prompt.
Prompt parse_prompt(const std::string& text);
// The full caption of a scene: every attribute stated.
Prompt scene_prompt(const Scene& scene);

// How training captions leave attributes open: the size phrase (with any position), the position
// alone (small items), or the whole caption. ", negative" is never dropped: its absence says
// "positive".
struct CaptionDropout {
  double size = 0.1;
  double position = 0.1;
  double caption = 0.1;
};
std::string training_caption(const Scene& scene, const CaptionDropout& dropout, std::mt19937_64& rng);

// Attributes read back from a canvas by pixel rules, not by a network: negative when the outer
// 1-pixel ring is brighter than mid-grey; then, on the positive canvas, small (in that quadrant)
// when one quadrant holds at least `small_share` of the ink, else large.
struct SceneAttributes {
  ItemSize size = ItemSize::Large;
  Quadrant quadrant = Quadrant::TopLeft;
  bool negative = false;
};
SceneAttributes measure_attributes(const torch::Tensor& canvas, double small_share = 0.8);

// The same rules for a batch (B, 32, 32) uint8: negative (B) bool, small (B) bool, quadrant (B)
// int64 (0 top left, 1 top right, 2 bottom left, 3 bottom right, of the most inked quadrant).
struct BatchAttributes {
  torch::Tensor negative, small, quadrant;
};
BatchAttributes measure_attributes_batch(const torch::Tensor& canvases, double small_share = 0.8);

// Scenes brought to one form by the rules, for a classifier: positive (negatives inverted back),
// and a small item's quadrant enlarged 2x (nearest) to the whole canvas. (B, 32, 32) uint8 in and out.
torch::Tensor canonical_scenes(const torch::Tensor& canvases);
// Whether the measured attributes agree with everything the prompt states.
bool attributes_match(const Prompt& prompt, const SceneAttributes& measured);

// A WordPiece tokenizer.json whose vocabulary is the grammar's words plus `rare_tokens`, which
// never occur in training captions and serve as subject tokens.
std::string scene_tokenizer_json(const std::vector<std::string>& rare_tokens);
const std::vector<std::string>& default_rare_tokens();  // sks, zwx, qrv, ...

}  // namespace gsoft::data
