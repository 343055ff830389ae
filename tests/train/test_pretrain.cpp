// Pretraining pieces: the WordPiece trainer, the corpus guard, packing, MLM training that learns
// and resumes exactly, the saved checkpoint loading as a classifier; and the BoW baseline.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/data/corpus.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/bow.h"
#include "gsoft/models/classifier.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/word_vectors.h"
#include "gsoft/text/wordpiece_trainer.h"
#include "gsoft/train/pretrain.h"
#include "support/helpers.h"
#include "support/tiny_model.h"

namespace {

using namespace gsoft;
namespace fs = std::filesystem;

std::vector<std::string> corpus() {
  std::vector<std::string> t;
  const fs::path p = test::scratch_dir("pretrain_corpus") / "c.csv";
  test::write_sentiment_csv(p, 400, 5);
  return data::read_corpus(p.string(), data::TableFormat{});
}

TEST(WordPieceTrainer, FrequentWordsWholeRareWordsInPieces) {
  std::vector<std::string> texts = corpus();
  texts.push_back("unbelievably");  // rare: must split into known pieces, not [UNK]
  WordPieceTrainerOptions o;
  o.vocab_size = 120;
  const Tokenizer t = Tokenizer::from_json(train_wordpiece(texts, o));
  EXPECT_LE(t.vocab_size(), 120);
  EXPECT_EQ(t.token_to_id("[PAD]"), 0);
  EXPECT_EQ(t.token_to_id("[MASK]"), 4);
  EXPECT_EQ(t.pad_id(), 0);
  const Encoding e = t.encode("The movie was GREAT.");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"[CLS]", "the", "movie", "was", "great", ".", "[SEP]"}));
  const Encoding rare = t.encode("unbelievably");
  EXPECT_GT(rare.size(), 3u);
  for (const auto& tok : rare.tokens) EXPECT_NE(tok, "[UNK]");
  EXPECT_THROW(train_wordpiece(texts, WordPieceTrainerOptions{10}), std::invalid_argument);
}

TEST(Corpus, ParagraphsAndHeldOutOverlap) {
  const fs::path d = test::scratch_dir("corpus_txt");
  test::write_text(d / "c.txt", "first line\nof one paragraph\n\n\nsecond paragraph\n");
  EXPECT_EQ(data::read_corpus((d / "c.txt").string()),
            (std::vector<std::string>{"first line of one paragraph", "second paragraph"}));
  std::vector<std::string> texts{"a review that says the plot was a mess from start to finish indeed",
                                 "another review about something else entirely with many words here",
                                 "good film"};
  const std::vector<std::string> held{"The plot was a mess from start to finish", "good film"};
  EXPECT_EQ(data::remove_overlaps(texts, held), 1u);  // the 8-word run; "good film" is too short to count
  EXPECT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[1], "good film");
}

TEST(Pretrain, PacksLearnsResumesAndLoadsAsAClassifier) {
  const std::vector<std::string> texts = corpus();
  WordPieceTrainerOptions wo;
  wo.vocab_size = 64;
  const Tokenizer tok = Tokenizer::from_json(train_wordpiece(texts, wo));
  const auto seqs = pack_sequences(tok, texts, 24);
  size_t tokens = 0, body = 0;
  for (const auto& s : seqs) {
    ASSERT_LE(s.size(), 24u);
    EXPECT_EQ(s.front(), *tok.token_to_id("[CLS]"));
    EXPECT_EQ(s.back(), *tok.token_to_id("[SEP]"));
    tokens += s.size() - 2;
  }
  for (const auto& t : texts) body += tok.encode(t, std::nullopt, 0, false).size();
  EXPECT_EQ(tokens, body);

  EncoderConfig c = test::tiny_encoder_config(tok.vocab_size());
  c.max_position_embeddings = 24;
  auto make = [&] {
    torch::manual_seed(1);
    MaskedLM m(c);
    init_weights(*m);
    return m;
  };
  PretrainOptions o;
  o.max_steps = 60;
  o.batch_size = 16;
  o.lr = 3e-3;
  o.checkpoint_every = 0;
  o.out_dir = test::scratch_dir("pretrain_whole").string();
  MaskedLM whole = make();
  const PretrainResult full = pretrain_mlm(*whole, tok, seqs, o);
  ASSERT_EQ(full.losses.size(), 60u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += full.losses[i], last += full.losses[50 + i];
  EXPECT_LT(last, first * 0.9) << "MLM loss did not fall";  // random word order: unigram-level learning

  o.out_dir = test::scratch_dir("pretrain_resumed").string();
  MaskedLM a = make();
  TrainCallbacks stop;
  int steps = 0;
  stop.on_step = [&](const StepInfo&) { ++steps; };
  stop.should_stop = [&] { return steps == 25; };
  EXPECT_TRUE(pretrain_mlm(*a, tok, seqs, o, stop).interrupted);
  MaskedLM b = make();
  torch::manual_seed(77);
  const PretrainResult rest = pretrain_mlm(*b, tok, seqs, o);
  ASSERT_EQ(rest.losses.size(), 35u);
  for (size_t i = 0; i < 35; ++i) EXPECT_EQ(rest.losses[i], full.losses[25 + i]) << "step " << 26 + i;

  // --stop-at ends the run without touching the schedule; a later run continues it exactly.
  o.out_dir = test::scratch_dir("pretrain_stop_at").string();
  o.stop_at_step = 25;
  MaskedLM s1 = make();
  const PretrainResult early = pretrain_mlm(*s1, tok, seqs, o);
  EXPECT_FALSE(early.interrupted);
  ASSERT_EQ(early.end_step, 25);
  for (size_t i = 0; i < 25; ++i) EXPECT_EQ(early.losses[i], full.losses[i]) << "step " << i + 1;
  o.stop_at_step = 0;
  MaskedLM s2 = make();
  const PretrainResult later = pretrain_mlm(*s2, tok, seqs, o);
  ASSERT_EQ(later.losses.size(), 35u);
  EXPECT_EQ(later.losses.back(), full.losses.back());
  o.out_dir = test::scratch_dir("pretrain_resumed_save").string();

  // The saved checkpoint is a Hugging Face BertForMaskedLM that loads as a classifier.
  const fs::path dir = o.out_dir;  // a fresh directory
  save_pretrained(*b, dir.string());
  test::write_text(dir / "tokenizer.json", train_wordpiece(texts, wo));
  LoadedClassifier clf = load_classifier(dir.string());
  EXPECT_EQ(clf.missing.size(), 4u);  // pooler.dense and classifier weight + bias
  auto mp = b->named_parameters();
  for (const auto& p : clf.model->named_parameters())
    if (mp.contains(p.key())) EXPECT_TRUE(torch::equal(p.value(), mp[p.key()])) << p.key();
  const auto file = io::read_safetensors((dir / "model.safetensors").string());
  EXPECT_TRUE(file.tensors.count("cls.predictions.transform.dense.weight"));
  EXPECT_TRUE(file.tensors.count("bert.embeddings.word_embeddings.weight"));
}

TEST(Pretrain, HuggingFaceInitialisation) {
  torch::manual_seed(0);
  MaskedLM m(test::tiny_encoder_config(500));
  init_weights(*m);
  auto p = m->named_parameters();
  EXPECT_NEAR(p["bert.embeddings.word_embeddings.weight"].std().item<double>(), 0.02, 0.002);
  EXPECT_TRUE(torch::all(p["bert.embeddings.LayerNorm.weight"].eq(1)).item<bool>());
  EXPECT_TRUE(torch::all(p["cls.predictions.bias"].eq(0)).item<bool>());
}

TEST(WordVectors, GloveTextAndWinkJsonReadAlike) {
  const fs::path d = test::scratch_dir("word_vectors");
  test::write_text(d / "v.txt", "3 3\ngood 0.5 1 -2\nbad -0.5 -1 2e0\n\n\" 0 0 0.25\r\n");
  // wink's layout: other keys first, each vector followed by its norm and index, escaped words.
  test::write_text(d / "v.json",
                   "{\"precision\":8,\"dimensions\":3,\"words\":[\"good\",\"bad\",\"\\\"\"],\"vectors\":{"
                   "\"good\":[0.5,1,-2,2.29,0],\"bad\":[-0.5,-1,2e0,2.29,1],\"\\\"\":[0,0,0.25,0.25,2]},"
                   "\"unkVector\":[0,0,0,0,-1]}");
  for (const char* f : {"v.txt", "v.json"}) {
    SCOPED_TRACE(f);
    const WordVectors all = read_word_vectors((d / f).string());
    EXPECT_EQ(all.dim, 3);
    EXPECT_EQ(all.entries, 3);
    ASSERT_EQ(all.vectors.size(), 3u);
    EXPECT_EQ(all.vectors.at("good"), (std::vector<float>{0.5f, 1.f, -2.f}));
    EXPECT_EQ(all.vectors.at("bad"), (std::vector<float>{-0.5f, -1.f, 2.f}));
    EXPECT_EQ(all.vectors.at("\""), (std::vector<float>{0.f, 0.f, 0.25f}));
    const WordVectors some = read_word_vectors((d / f).string(), [](const std::string& w) { return w == "bad"; });
    EXPECT_EQ(some.entries, 3);
    EXPECT_EQ(some.vectors.size(), 1u);
    EXPECT_TRUE(some.vectors.count("bad"));
  }
}

TEST(WordVectors, MalformedFilesNameWhatAndWhere) {
  const fs::path d = test::scratch_dir("word_vectors_bad");
  auto message = [&](const std::string& name, const std::string& text) {
    test::write_text(d / name, text);
    try {
      read_word_vectors((d / name).string());
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto expect_has = [](const std::string& m, const std::string& part) {
    EXPECT_NE(m.find(part), std::string::npos) << "'" << part << "' not in: " << m;
  };
  std::string m = message("count.txt", "a 1 2 3\nb 1 2\n");
  expect_has(m, "count.txt:2");
  expect_has(m, "expected a word and 3 numbers");
  expect_has(m, "found 2");
  m = message("nan.txt", "a 1 x 3\n");
  expect_has(m, "nan.txt:1");
  expect_has(m, "'x'");
  expect_has(message("empty.txt", "\n\n"), "no word vectors");
  expect_has(message("short.json", "{\"dimensions\":3,\"vectors\":{\"a\":[1,2]}}"), "has 2 values, expected at least 3");
  expect_has(message("cut.json", "{\"dimensions\":3,\"vectors\":{\"a\":[1,2,3],\"b\":[1,"), "expected a finite number");
  expect_has(message("order.json", "{\"vectors\":{\"a\":[1]},\"dimensions\":1}"), "before \"dimensions\"");
  expect_has(message("dim.json", "{\"dimensions\":0,\"vectors\":{}}"), "\"dimensions\" is 0, expected a whole number in 1..4096");
  expect_has(message("none.json", "{\"dimensions\":3}"), "no \"vectors\"");
  expect_has(message("long.txt", std::string(2000, 'w') + " 1\n"), "exceeds the 1024-byte limit");
  EXPECT_THROW(read_word_vectors((d / "missing.txt").string()), std::runtime_error);
}

TEST(Pretrain, WordVectorsInitialiseWholeWordEmbeddingsKeepingAngles) {
  const Tokenizer tok = Tokenizer::from_json(train_wordpiece(corpus(), WordPieceTrainerOptions{120}));
  WordVectors wv;
  wv.dim = 3;
  wv.vectors = {{"great", {1, 0, 0}}, {"awful", {-2, 0.5, 0}}, {"movie", {0, 3, 1}}, {"##s", {9, 9, 9}}, {"[CLS]", {1, 1, 1}}};
  ASSERT_TRUE(tok.token_to_id("great") && tok.token_to_id("awful") && tok.token_to_id("movie"));
  torch::manual_seed(0);
  MaskedLM model(test::tiny_encoder_config(tok.vocab_size()));
  init_weights(*model);
  const torch::Tensor emb = model->encoder->named_parameters()["embeddings.word_embeddings.weight"];
  const torch::Tensor before = emb.detach().clone();
  EXPECT_EQ(init_word_embeddings(*model, tok, wv, /*mean_norm=*/2.0), 3);
  const torch::Tensor after = emb.detach().to(torch::kDouble);
  auto row = [&](const char* w) { return after[*tok.token_to_id(w)]; };
  // One scale for all rows: norms keep their ratios and average 2; angles are kept.
  const double n_great = row("great").norm().item<double>(), n_awful = row("awful").norm().item<double>(),
               n_movie = row("movie").norm().item<double>();
  EXPECT_NEAR((n_great + n_awful + n_movie) / 3, 2.0, 1e-5);
  EXPECT_NEAR(n_awful / n_great, std::sqrt(4.25), 1e-5);
  const double cos = (row("great") * row("awful")).sum().item<double>() / (n_great * n_awful);
  EXPECT_NEAR(cos, -2 / std::sqrt(4.25), 1e-5);
  // Pieces, special tokens and words without vectors keep their initial rows.
  for (const char* t : {"##s", "[CLS]", "the"}) {
    if (auto id = tok.token_to_id(t)) EXPECT_TRUE(torch::equal(emb[*id], before[*id])) << t;
  }
}

TEST(Baseline, BagOfWordsLearnsTheSentimentWords) {
  const fs::path d = test::scratch_dir("bow");
  test::write_sentiment_csv(d / "a.csv", 300, 1);
  test::write_sentiment_csv(d / "b.csv", 100, 2);
  test::write_sentiment_csv(d / "c.csv", 100, 3);
  data::TableFormat f;
  const BowResult r = bow_logistic_regression(data::read_table((d / "a.csv").string(), f),
                                              data::read_table((d / "b.csv").string(), f),
                                              data::read_table((d / "c.csv").string(), f));
  EXPECT_GE(r.test_accuracy, 0.95);
  EXPECT_GT(r.features, 10);
}

}  // namespace
