#include "readers.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <c10/util/Exception.h>

#include "gsoft/data/corpus.h"
#include "gsoft/data/images.h"
#include "gsoft/data/tasks.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/checkpoint.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/tokenizer.h"
#include "gsoft/text/word_vectors.h"
#include "gsoft/train/lipconv.h"

namespace gsoft::fuzz {
namespace fs = std::filesystem;
namespace {

// One scratch directory per process, in RAM where there is one; removed at exit.
class Scratch {
 public:
  Scratch() {
    const std::string tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (const std::string& base : {std::string("/dev/shm"), tmp}) {
      std::string tmpl = base + "/gsoft_fuzz_XXXXXX";
      if (mkdtemp(tmpl.data())) {
        dir_ = tmpl;
        return;
      }
    }
    // Not the reader's fault: a logic_error is not taken for a refusal of the input.
    throw std::logic_error("fuzz: cannot create a scratch directory under /dev/shm or " + tmp);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Writes the bytes to `name` in the scratch directory (replacing it) and returns its path.
  std::string write(const std::string& name, const uint8_t* data, size_t size) const {
    const fs::path p = dir_ / name;
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) throw std::logic_error("fuzz: cannot write " + p.string());  // not the reader's fault: let it surface
    return p.string();
  }
  std::string fresh_dir(const std::string& name) const {
    const fs::path p = dir_ / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
  }

 private:
  fs::path dir_;
};

const Scratch& scratch() {
  static const Scratch s;
  return s;
}

std::string as_string(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// Inputs with options: byte 0 holds them; the rest is the file.
struct Options {
  uint8_t bits = 0;
  const uint8_t* data = nullptr;
  size_t size = 0;
};
Options options(const uint8_t* data, size_t size) {
  if (size == 0) return {0, data, 0};
  return {data[0], data + 1, size - 1};
}

// Two files: a 4-byte little-endian length of the first, then the first, then the second.
std::pair<std::string, std::string> split_two(const uint8_t* data, size_t size) {
  uint32_t n = 0;
  for (size_t i = 0; i < 4 && i < size; ++i) n |= uint32_t{data[i]} << (8 * i);
  const size_t head = std::min<size_t>(size, 4);
  const size_t first = std::min<size_t>(n, size - head);
  return {as_string(data + head, first), as_string(data + head + first, size - head - first)};
}

// A file: the safetensors format, whole (header length, JSON header, tensor bytes).
void run_safetensors(const uint8_t* data, size_t size) {
  const auto f = io::read_safetensors(scratch().write("t.safetensors", data, size));
  for (const auto& [name, t] : f.tensors) (void)t.sum();  // touch every byte that was read
}

// The text of a model.safetensors.index.json; the directory also holds a valid shard
// "a.safetensors" with tensors "x" and "y".
void run_checkpoint_index(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = scratch().fresh_dir("ckpt");
    io::write_safetensors((fs::path(d) / "a.safetensors").string(),
                          {{"x", torch::ones({2})}, {"y", torch::ones({}, torch::kInt8)}});
    return d;
  }();
  scratch().write("ckpt/model.safetensors.index.json", data, size);
  (void)io::read_checkpoint(dir);
}

// The text of a LipConvNet's lipconvnet.json, loaded with fuzz/data/lipconvnet_soc_d5_c2.safetensors
// (SOC, depth 5, 2 initial channels, Fashion-MNIST) as its model.safetensors.
void run_lipconvnet(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = scratch().fresh_dir("lipconvnet");
    fs::copy_file(GSOFT_SOURCE_DIR "/fuzz/data/lipconvnet_soc_d5_c2.safetensors", fs::path(d) / "model.safetensors");
    return d;
  }();
  scratch().write("lipconvnet/lipconvnet.json", data, size);
  (void)load_lipconvnet(dir);
}

// The text of an adapter_config.json.
void run_adapter_config(const uint8_t* data, size_t size) {
  (void)io::adapter_config_from_json(as_string(data, size));
}

// The text of a model's config.json.
void run_encoder_config(const uint8_t* data, size_t size) {
  (void)EncoderConfig::from_json(as_string(data, size));
}

// The text of a tokenizer.json. When it loads, the same bytes are also encoded as text, alone
// and as a pair truncated to 16 ids, and every id is mapped back to its token.
void run_tokenizer_json(const uint8_t* data, size_t size) {
  const std::string text = as_string(data, size);
  const auto tok = Tokenizer::from_json(text);
  const auto e = tok.encode(text.substr(0, 512));
  for (int64_t id : e.ids) (void)tok.id_to_token(id);
  (void)tok.encode("Hello, world! naïve café 東京", text.substr(0, 64), 16);
  (void)tok.pre_tokenize(text.substr(0, 512));
}

// Text to encode with the shipped WordPiece tokenizer and a byte-level BPE one (GPT-2's); a
// newline splits it into a pair.
void run_tokenize(const uint8_t* data, size_t size) {
  static const Tokenizer wordpiece = Tokenizer::from_file(GSOFT_SOURCE_DIR "/models/polarity-bert/tokenizer.json");
  static const Tokenizer bpe = Tokenizer::from_file(GSOFT_SOURCE_DIR "/tests/data/tokenizers/gpt2.tokenizer.json");
  const std::string text = as_string(data, size);
  const size_t nl = text.find('\n');
  std::optional<std::string> pair;
  if (nl != std::string::npos) pair = text.substr(nl + 1);
  for (const Tokenizer* t : {&wordpiece, &bpe}) {
    (void)t->encode(text.substr(0, nl));
    (void)t->encode(text.substr(0, nl), pair, 32);
  }
}

// Option byte: bits 0-1 the format (0 CSV, 1 TSV, 2 JSONL, 3 plain-text corpus), bit 2 no header
// (columns by index), bit 3 no CSV quoting, bit 4 skip bad rows, bit 5 a text pair, bit 6 regression,
// bit 7 unlabelled. Then the file.
void run_table(const uint8_t* data, size_t size) {
  const auto o = options(data, size);
  static const char* kExt[] = {".csv", ".tsv", ".jsonl", ".txt"};
  const std::string path = scratch().write(std::string("table") + kExt[o.bits & 3], o.data, o.size);
  data::TableFormat f;
  if (o.bits & 4) {
    f.header = false;
    f.text_column = "0";
    f.label_column = "1";
    f.pair_column = (o.bits & 32) ? "2" : "";
  } else if (o.bits & 32) {
    f.pair_column = "text_pair";
  }
  f.quoting = !(o.bits & 8);
  f.skip_bad_rows = o.bits & 16;
  f.regression = o.bits & 64;
  f.labelled = !(o.bits & 128);
  if ((o.bits & 3) == 3) {
    (void)data::read_corpus(path);
    return;
  }
  (void)data::split_by_position(data::read_table(path, f));
}

// Option byte: bit 0 names the images file *.gz (read through zlib). Then split_two: the images
// IDX file (3 dimensions), the labels IDX file (1 dimension).
void run_idx(const uint8_t* data, size_t size) {
  const auto o = options(data, size);
  const auto [images, labels] = split_two(o.data, o.size);
  const std::string ip = scratch().write((o.bits & 1) ? "images.gz" : "images", reinterpret_cast<const uint8_t*>(images.data()), images.size());
  const std::string lp = scratch().write("labels", reinterpret_cast<const uint8_t*>(labels.data()), labels.size());
  (void)data::read_idx(ip, lp, 10);
}

// Option byte: bit 0 CIFAR-100 (train.bin... test.bin), else CIFAR-10 (test_batch.bin). Then the
// binary file of records.
void run_cifar(const uint8_t* data, size_t size) {
  const auto o = options(data, size);
  const std::string dir = scratch().fresh_dir("cifar");
  const bool c100 = o.bits & 1;
  scratch().write(c100 ? "cifar/test.bin" : "cifar/test_batch.bin", o.data, o.size);
  (void)(c100 ? data::read_cifar100(dir, false) : data::read_cifar10(dir, false));
}

// A word-vector file: GloVe text, or wink's JSON when it starts with '{'. Every other word is kept.
void run_word_vectors(const uint8_t* data, size_t size) {
  const std::string path = scratch().write("vectors.txt", data, size);
  bool keep = false;
  (void)read_word_vectors(path, [&](const std::string&) { return keep = !keep; });
}

}  // namespace

const std::vector<Reader>& readers() {
  static const std::vector<Reader> all = {
      {"safetensors", "io::read_safetensors", run_safetensors},
      {"checkpoint_index", "io::read_checkpoint (sharded model.safetensors.index.json)", run_checkpoint_index},
      {"lipconvnet", "load_lipconvnet (lipconvnet.json with a fixed model.safetensors)", run_lipconvnet},
      {"adapter_config", "io::adapter_config_from_json (adapter_config.json)", run_adapter_config},
      {"encoder_config", "EncoderConfig::from_json (config.json)", run_encoder_config},
      {"tokenizer_json", "Tokenizer::from_json (tokenizer.json), then encode", run_tokenizer_json},
      {"tokenize", "Tokenizer::encode on the shipped WordPiece and GPT-2's BPE", run_tokenize},
      {"table", "data::read_table (CSV, TSV, JSONL) and data::read_corpus", run_table},
      {"idx", "data::read_idx (IDX images and labels, plain or gzipped)", run_idx},
      {"cifar", "data::read_cifar10 / read_cifar100 (binary records)", run_cifar},
      {"word_vectors", "read_word_vectors (GloVe text, wink JSON)", run_word_vectors},
  };
  return all;
}

const Reader& find_reader(const std::string& name) {
  std::string names;
  for (const auto& r : readers()) {
    if (name == r.name) return r;
    names += (names.empty() ? "" : ", ") + std::string(r.name);
  }
  throw std::invalid_argument("unknown reader '" + name + "' (known: " + names + ")");
}

Outcome feed(const Reader& reader, const uint8_t* data, size_t size) {
  try {
    reader.run(data, size);
    return {true, ""};
  } catch (const c10::Error&) {
    throw;  // torch caught what the reader should have checked first, with a message about tensors
  } catch (const std::bad_alloc&) {
    throw;  // a size from the file reached an allocation unchecked
  } catch (const std::logic_error& e) {
    // invalid_argument is how GSOFT_CHECK reports bad input; other logic errors are bugs.
    if (dynamic_cast<const std::invalid_argument*>(&e) || dynamic_cast<const std::out_of_range*>(&e))
      return {false, e.what()};
    throw;
  } catch (const std::exception& e) {
    return {false, e.what()};
  }
}

}  // namespace gsoft::fuzz
