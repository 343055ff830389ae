#include "gsoft/models/classifier.h"

#include <torch/torch.h>

#include <filesystem>

#include "gsoft/core/error.h"
#include "gsoft/io/adapter_io.h"
#include "io/file_util.h"

namespace gsoft {
namespace fs = std::filesystem;

namespace {
// config.json text with the classifier's fields set, everything else kept.
std::string classifier_config_json(const std::string& base_text, const std::string& origin, const EncoderConfig& c) {
  nlohmann::json j = io::parse_json(base_text, origin);
  nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
  for (size_t i = 0; i < c.label_names.size(); ++i) {
    id2label[std::to_string(i)] = c.label_names[i];
    label2id[c.label_names[i]] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  j["num_labels"] = c.num_labels;
  j["problem_type"] = c.problem_type;
  j["architectures"] = {c.is_roberta() ? "RobertaForSequenceClassification" : "BertForSequenceClassification"};
  j["gsoft_classifier_head"] = c.classifier_head.empty() ? "huggingface" : c.classifier_head;
  return j.dump(2) + "\n";
}
}  // namespace

LoadedClassifier load_classifier(const std::string& model_dir, const ClassifierOptions& o, const std::string& adapter_dir) {
  LoadedClassifier out;
  // A trained adapter's config.json describes its head; the base's describes the encoder.
  const fs::path adapter_config = fs::path(adapter_dir) / "config.json";
  const fs::path config_path = !adapter_dir.empty() && fs::exists(adapter_config) ? adapter_config
                                                                                   : fs::path(model_dir) / "config.json";
  const std::string text = io::read_text_file(config_path.string());
  EncoderConfig c = EncoderConfig::from_json(text, config_path.string());
  if (o.regression) {
    c.problem_type = "regression";
    c.label_names = {"score"};
  } else if (!o.label_names.empty()) {
    c.problem_type = "single_label_classification";
    c.label_names = o.label_names;
  } else if (c.label_names.empty()) {
    for (int64_t i = 0; i < c.num_labels; ++i) c.label_names.push_back("LABEL_" + std::to_string(i));
  }
  c.num_labels = static_cast<int64_t>(c.label_names.size());
  if (c.problem_type.empty()) c.problem_type = c.num_labels == 1 ? "regression" : "single_label_classification";
  if (o.dropout >= 0) {
    GSOFT_CHECK(o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
    c.hidden_dropout_prob = c.attention_probs_dropout_prob = o.dropout;
  }
  if (o.head) c.classifier_head = *o.head == HeadKind::AuthorsGlue ? "authors_glue" : "huggingface";
  const HeadKind head = c.classifier_head == "authors_glue" ? HeadKind::AuthorsGlue : HeadKind::HuggingFace;

  out.tokenizer = Tokenizer::from_file((fs::path(model_dir) / "tokenizer.json").string());
  if (out.tokenizer->vocab_size() > c.vocab_size)
    throw std::runtime_error(out.tokenizer->origin() + ": the tokenizer has " + std::to_string(out.tokenizer->vocab_size()) +
                             " ids but " + config_path.string() + " says vocab_size " + std::to_string(c.vocab_size));
  out.model = SequenceClassifier(c, head, o.head_dropout);
  out.missing = load_hf_checkpoint(*out.model, model_dir);
  if (!adapter_dir.empty()) io::load_adapter(adapter_dir, *out.model);
  out.config = c;
  out.config_json = classifier_config_json(text, config_path.string(), c);
  return out;
}

}  // namespace gsoft
