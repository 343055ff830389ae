// gsoft diffusion compare: the paper's Table 2 on gsoft's pipeline. Every method fine-tunes on the
// same subjects (one Fashion-MNIST test item per class) at two training lengths, each run and each
// measurement in its own process; the result is a table, a plot of subject fidelity against
// prompt fidelity, and a picture grid. Finished runs are kept, so an interrupted compare continues.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "diffusion_common.h"
#include "gsoft/core/runtime.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/train/dreambooth.h"
#include "subprocess.h"

namespace gsoft::cli {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Each method's flags and learning rate: equal adapter budgets on the UNet's attention projections
// and ResNet convolutions (dreambooth's default targets): GSOFT b=16 and BOFT b=16 with 2 factors
// hold 32 values per input feature of a layer (plus the scale), LoRA r=16 holds 16 per input and 16
// per output feature. BOFT with 4 factors of b=8 would match too, but 288 (32 channels x 3 x 3) is
// not a multiple of 8 x 2^3. The adapters train at 3e-4 and full fine-tuning at 1e-4: over the
// ten default subjects (docs/diffusion.md) 1e-3 cost GSOFT, BOFT and Double GSOFT most of the
// contextual prompts (49%, 54% and 27% right), while 3e-4 kept 80% and 81% with subject fidelity
// 0.01 lower; LoRA kept 78% at 1e-3 and 88% at 3e-4. GSOFT trains at 2e-4: at 3e-4 a second
// seed kept 78.3%, 11 points under the base pipeline; 2e-4 kept 82-84% with both seeds.
struct MethodDefaults {
  std::string flags;
  double lr;
};
const std::map<std::string, MethodDefaults>& method_defaults() {
  static const std::map<std::string, MethodDefaults> m{
      {"gsoft", {"--method gsoft --block-size 16", 2e-4}},
      {"double_gsoft", {"--method double_gsoft --block-size 16", 3e-4}},
      {"oft", {"--method oft --block-size 16", 3e-4}},
      {"boft", {"--method boft --block-size 16 --boft-factors 2", 3e-4}},
      {"lora", {"--method lora --r 16 --lora-alpha 16", 3e-4}},
      {"full", {"--method full", 1e-4}}};
  return m;
}

// A rate as short text that names a run's folder: 0.0003 and 3e-4 give "3e-4", 0.00025 "2.5e-4".
std::string lr_text(double lr) {
  int e = static_cast<int>(std::floor(std::log10(lr) + 1e-9));
  double mantissa = lr / std::pow(10.0, e);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4ge%d", mantissa, e);
  return buf;
}

// One entry of --methods: METHOD, or METHOD@LR for the same method at another learning rate. A
// run at the method's own rate lives in OUT/subjectN/METHOD, one at another rate in METHOD-lrLR,
// so a rate sweep adds runs beside the grid's and reuses them when run again.
struct MethodRun {
  std::string method, label, dir, lr;
  std::string flags() const { return method_defaults().at(method).flags + " --lr " + lr; }
};

MethodRun parse_method_run(const std::string& spec) {
  const size_t at = spec.find('@');
  MethodRun r;
  r.method = spec.substr(0, at);
  const auto it = method_defaults().find(r.method);
  if (it == method_defaults().end()) {
    std::string known;
    for (const auto& [name, d] : method_defaults()) known += (known.empty() ? "" : ", ") + name;
    throw CLI::ValidationError("--methods", "unknown method '" + r.method + "' in '" + spec + "' (expected one of " +
                                                known + ", optionally as METHOD@LR)");
  }
  double lr = it->second.lr;
  if (at != std::string::npos) {
    const std::string text = spec.substr(at + 1);
    size_t used = 0;
    try {
      lr = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || !(lr > 0) || !std::isfinite(lr))
      throw CLI::ValidationError("--methods", "'" + spec + "': expected METHOD@LR with a positive learning rate such "
                                                           "as lora@3e-4, found '" + text + "' after the @");
  }
  r.lr = lr_text(lr);
  const bool own_rate = r.lr == lr_text(it->second.lr);
  r.label = own_rate ? r.method : r.method + "@" + r.lr;
  r.dir = own_rate ? r.method : r.method + "-lr" + r.lr;
  return r;
}

// The suffix of a run's folder for a training seed: seed 0 keeps the folder of a single-seed grid,
// so adding seeds reuses its runs.
std::string seed_suffix(int64_t seed) { return seed == 0 ? "" : "-seed" + std::to_string(seed); }

// A cached run must be the run asked for. Its checkpoint records the learning rate and seed it
// trained with, so a folder left from a grid with other defaults is refused instead of reported
// under a new rate or seed.
void check_cached_run(const fs::path& rdir, const MethodRun& m, int64_t seed) {
  const fs::path checkpoint = rdir / "checkpoint.safetensors";
  if (!fs::exists(checkpoint)) return;
  const auto meta = io::read_safetensors_metadata(checkpoint.string());
  const auto it = meta.find("options");
  if (it == meta.end()) return;
  const json options = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (!options.is_object()) return;
  if (options.contains("lr") && options["lr"].is_number()) {
    const double trained = options["lr"].get<double>(), asked = std::stod(m.lr);
    if (std::abs(trained - asked) > 1e-6 * asked)
      throw std::runtime_error("compare: " + rdir.string() + " holds a run trained at learning rate " + lr_text(trained) +
                               ", but " + m.label + " asks for " + m.lr + "; move it to " +
                               (rdir.parent_path() / (m.method + "-lr" + lr_text(trained) + seed_suffix(seed))).string() +
                               " or delete it");
  }
  if (options.contains("seed") && options["seed"].is_number_unsigned() && options["seed"].get<int64_t>() != seed)
    throw std::runtime_error("compare: " + rdir.string() + " holds a run trained with seed " +
                             std::to_string(options["seed"].get<int64_t>()) + ", but this folder is for seed " +
                             std::to_string(seed) + "; move it or delete it");
}

struct DiffusionCompareCli {
  std::string model = "models/fashion-diffusion", out = "runs/diffusion-compare", data;
  int64_t subjects = 10, n_base = 8, n_context = 4, eval_steps = 50, class_images = 100, seeds = 1;
  double prior_loss_weight = 0.2;
  std::vector<std::string> methods{"gsoft", "double_gsoft", "lora", "boft", "full"};
  std::vector<int64_t> steps{100, 300};
};

// A JSON file written by an earlier run of the same compare, or the result of running it now.
json cached(const fs::path& file, const std::function<json()>& make) {
  if (fs::exists(file)) {
    std::ifstream in(file);
    return json::parse(in);
  }
  json j = make();
  io::write_file_atomic(file.string(), j.dump(2) + "\n");
  return j;
}

struct Row {
  std::string label, lr = "–", method;  // method: empty for the base pipeline
  int64_t step = 0;
  double subject = 0, ncc = 0, prompt = 0, seconds_per_step = 0, rss = 0;
  double subject_sd = 0, prompt_sd = 0;  // between the per-seed means, when there are several seeds
  int64_t params = -1, n = 0, seeds = 1;
};

// Subject fidelity against prompt fidelity, one colour per method; a method run at several
// learning rates gets a line through its points at the longest training length, so its trade-off
// curve can be read against another method's.
std::string svg_plot(const std::vector<Row>& rows, double floor, int64_t longest) {
  const double W = 760, H = 480, L = 80, R = 40, T = 40, B = 60;
  double xmin = floor, xmax = floor, ymin = 1, ymax = 0;
  for (const auto& r : rows) {
    xmin = std::min(xmin, r.subject), xmax = std::max(xmax, r.subject);
    ymin = std::min(ymin, r.prompt), ymax = std::max(ymax, r.prompt);
  }
  const double dx = std::max(0.02, (xmax - xmin) * 0.1), dy = std::max(0.05, (ymax - ymin) * 0.1);
  xmin -= dx, xmax += dx, ymin = std::max(0.0, ymin - dy), ymax = std::min(1.0, ymax + dy);
  auto X = [&](double v) { return L + (v - xmin) / (xmax - xmin) * (W - L - R); };
  auto Y = [&](double v) { return H - B - (v - ymin) / (ymax - ymin) * (H - T - B); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='12'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>Subject-driven fine-tuning: subject fidelity vs "
    << "prompt fidelity (mean over subjects)</text>\n"
    << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n"
    << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  for (int i = 0; i <= 5; ++i) {
    const double vx = xmin + (xmax - xmin) * i / 5, vy = ymin + (ymax - ymin) * i / 5;
    s << "<text x='" << X(vx) << "' y='" << H - B + 18 << "' text-anchor='middle'>" << std::round(vx * 1000) / 1000 << "</text>\n"
      << "<text x='" << L - 8 << "' y='" << Y(vy) + 4 << "' text-anchor='end'>" << std::lround(vy * 100) << "%</text>\n"
      << "<line x1='" << L << "' y1='" << Y(vy) << "' x2='" << W - R << "' y2='" << Y(vy) << "' stroke='#eee'/>\n";
  }
  s << "<line x1='" << X(floor) << "' y1='" << T << "' x2='" << X(floor) << "' y2='" << H - B
    << "' stroke='#c33' stroke-dasharray='4 3'/>\n"
    << "<text x='" << X(floor) + 4 << "' y='" << T + 12 << "' fill='#c33'>other items of the class</text>\n"
    << "<text x='" << (L + W - R) / 2 << "' y='" << H - 18 << "' text-anchor='middle'>subject fidelity (evaluator feature cosine, "
    << "CLIP-I analogue)</text>\n"
    << "<text x='18' y='" << (T + H - B) / 2 << "' transform='rotate(-90 18 " << (T + H - B) / 2
    << ")' text-anchor='middle'>prompt fidelity (CLIP-T analogue)</text>\n";
  static const char* palette[] = {"#3a78c3", "#d9622b", "#3b9a4a", "#8e5cc2", "#c23b6e", "#7a6a2f", "#2aa3a3"};
  std::map<std::string, std::string> colour;
  for (const auto& r : rows)
    if (!r.method.empty() && !colour.count(r.method)) colour[r.method] = palette[colour.size() % std::size(palette)];
  for (const auto& [method, c] : colour) {
    std::vector<const Row*> curve;
    for (const auto& r : rows)
      if (r.method == method && r.step == longest) curve.push_back(&r);
    if (curve.size() < 2) continue;
    std::sort(curve.begin(), curve.end(), [](const Row* a, const Row* b) { return a->subject < b->subject; });
    s << "<polyline fill='none' stroke='" << c << "' stroke-width='1.5' points='";
    for (const Row* r : curve) s << X(r->subject) << "," << Y(r->prompt) << " ";
    s << "'/>\n";
  }
  for (const auto& r : rows) {
    const std::string c = r.method.empty() ? "#888" : colour[r.method];
    const int radius = r.method.empty() || r.step == longest ? 6 : 4;
    s << "<circle cx='" << X(r.subject) << "' cy='" << Y(r.prompt) << "' r='" << radius << "' fill='" << c
      << "' fill-opacity='0.6' stroke='" << c << "'/>\n"
      << "<text x='" << X(r.subject) + 9 << "' y='" << Y(r.prompt) - 5 << "' fill='" << c << "'>" << r.label << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

void run_diffusion_compare(const DiffusionCompareCli& o) {
  std::vector<MethodRun> methods;
  for (const auto& spec : o.methods) {
    methods.push_back(parse_method_run(spec));
    for (size_t i = 0; i + 1 < methods.size(); ++i)
      if (methods[i].dir == methods.back().dir)
        throw CLI::ValidationError("--methods", "'" + spec + "' names the same run as '" + o.methods[i] + "'");
  }
  if (o.steps.empty()) throw CLI::ValidationError("--steps", "give at least one training length");
  const int64_t longest = *std::max_element(o.steps.begin(), o.steps.end());
  const fs::path out(o.out);
  fs::create_directories(out);
  const data::ImageDataset test = fashion_items(o.data, false);
  const std::string threads = "--threads " + std::to_string(num_threads()) + " ";
  const std::string data_flag = o.data.empty() ? "" : " --data " + shell_quote(o.data);
  std::map<std::string, std::vector<json>> evals;  // row label -> one eval per subject
  std::vector<json> floors;
  int64_t first_subject = -1;
  for (int64_t k = 0; k < std::min<int64_t>(o.subjects, 10); ++k) {
    int64_t index = 0;
    while (test.labels[index].item<int64_t>() != k) ++index;  // the first test item of class k
    if (first_subject < 0) first_subject = index;
    const fs::path sdir = out / ("subject" + std::to_string(index));
    const std::string subject = " --subject-fmnist " + std::to_string(index) + data_flag;
    const std::string eval_flags = " --n-base " + std::to_string(o.n_base) + " --n " + std::to_string(o.n_context) +
                                   " --steps " + std::to_string(o.eval_steps);
    const json base = cached(sdir / "base.json", [&] {
      std::cerr << "compare: subject " << index << " (" << data::fashion_class_names()[static_cast<size_t>(k)] << "): base pipeline" << std::endl;
      return run_self_json(threads + "diffusion eval-subject --model " + shell_quote(o.model) + subject + eval_flags,
                           (sdir / "base.log").string(), "compare: base evaluation of subject " + std::to_string(index));
    });
    evals["base pipeline"].push_back(base["result"]);
    floors.push_back(base["other_items"]);
    for (const auto& m : methods)
      for (int64_t seed = 0; seed < o.seeds; ++seed) {
        const std::string run_name = m.label + (seed == 0 ? "" : " seed " + std::to_string(seed));
        const fs::path rdir = sdir / (m.dir + seed_suffix(seed));
        std::string save;
        for (int64_t s : o.steps)
          if (s != longest) save += (save.empty() ? " --save-steps " : ",") + std::to_string(s);
        check_cached_run(rdir, m, seed);
        const json summary = cached(rdir / "result.json", [&] {
          std::cerr << "compare: subject " << index << ": " << run_name << " for " << longest << " steps" << std::endl;
          return run_self_json(threads + "diffusion dreambooth --model " + shell_quote(o.model) + subject + " --out " +
                                   shell_quote(rdir.string()) + " " + m.flags() + " --max-steps " +
                                   std::to_string(longest) + save + " --num-class-images " + std::to_string(o.class_images) +
                                   " --prior-loss-weight " + json(o.prior_loss_weight).dump() +
                                   (seed == 0 ? "" : " --seed " + std::to_string(seed)) +
                                   " --class-images-dir " + shell_quote((out / "class_images" / std::to_string(k)).string()),
                               (rdir / "train.log").string(), "compare: " + run_name + " on subject " + std::to_string(index));
        });
        for (int64_t s : o.steps) {
          const std::string suffix = s == longest ? "" : "-step" + std::to_string(s);
          const std::string target = m.method == "full" ? " --model " + shell_quote((rdir / ("pipeline" + suffix)).string()) +
                                                       " --evaluator " + shell_quote(default_evaluator(o.model))
                                                 : " --model " + shell_quote(o.model) + " --adapter " +
                                                       shell_quote((rdir / ("adapter" + suffix)).string());
          const json e = cached(rdir / ("eval" + std::to_string(s) + ".json"), [&] {
            return run_self_json(threads + "diffusion eval-subject" + target + subject + eval_flags,
                                 (rdir / ("eval" + std::to_string(s) + ".log")).string(),
                                 "compare: evaluation of " + run_name + " at step " + std::to_string(s));
          });
          json row = e["result"];
          row["seconds_per_step"] = summary["seconds_per_step"];
          row["peak_rss_mb"] = summary["peak_rss_mb"];
          row["trainable_params"] = summary["trainable_params"];
          row["seed"] = seed;
          evals[m.label + " @" + std::to_string(s)].push_back(row);
          std::cerr << "compare: subject " << index << ": " << run_name << " @" << s << ": subject fidelity "
                    << row["subject_fidelity"] << ", prompt fidelity " << row["prompt_fidelity"] << std::endl;
        }
      }
  }

  // Means over subjects.
  std::vector<Row> rows;
  auto mean_row = [](const std::string& label, const std::vector<json>& v) {
    Row r;
    r.label = label;
    r.n = static_cast<int64_t>(v.size());
    std::vector<double> step_seconds;
    for (const auto& j : v) {
      r.subject += j["subject_fidelity"].get<double>() / r.n;
      r.ncc += j["instance_ncc"].get<double>() / r.n;
      if (j.contains("prompt_fidelity")) r.prompt += j["prompt_fidelity"].get<double>() / r.n;
      if (j.contains("seconds_per_step")) {
        step_seconds.push_back(j["seconds_per_step"].get<double>());
        r.rss = std::max(r.rss, j["peak_rss_mb"].get<double>());
        r.params = j["trainable_params"].get<int64_t>();
      }
    }
    // Seeds: the spread of the per-seed means says how much of a difference between methods a
    // second training run could undo.
    std::map<int64_t, std::pair<double, double>> per_seed;  // seed -> (subject, prompt) sums
    std::map<int64_t, int64_t> per_seed_n;
    for (const auto& j : v)
      if (j.contains("seed")) {
        const int64_t seed = j["seed"].get<int64_t>();
        per_seed[seed].first += j["subject_fidelity"].get<double>();
        if (j.contains("prompt_fidelity")) per_seed[seed].second += j["prompt_fidelity"].get<double>();
        ++per_seed_n[seed];
      }
    r.seeds = std::max<int64_t>(1, static_cast<int64_t>(per_seed.size()));
    if (r.seeds > 1) {
      double ss = 0, sp = 0;
      for (const auto& [seed, sums] : per_seed) {
        const double n = static_cast<double>(per_seed_n[seed]);
        ss += std::pow(sums.first / n - r.subject, 2), sp += std::pow(sums.second / n - r.prompt, 2);
      }
      r.subject_sd = std::sqrt(ss / static_cast<double>(r.seeds - 1));
      r.prompt_sd = std::sqrt(sp / static_cast<double>(r.seeds - 1));
    }
    // The median: a run that shared the machine with other work does not move it.
    if (!step_seconds.empty()) {
      std::sort(step_seconds.begin(), step_seconds.end());
      r.seconds_per_step = step_seconds[step_seconds.size() / 2];
    }
    return r;
  };
  rows.push_back(mean_row("base pipeline", evals["base pipeline"]));
  for (const auto& m : methods)
    for (int64_t s : o.steps) {
      rows.push_back(mean_row(m.label + " @" + std::to_string(s), evals[m.label + " @" + std::to_string(s)]));
      rows.back().lr = m.lr;
      rows.back().method = m.method;
      rows.back().step = s;
    }
  const Row floor = mean_row("other items", floors);

  std::ostringstream md;
  md << "Means over " << rows[0].n << " subjects (the first Fashion-MNIST test item of each class"
     << (rows[0].n < 10 ? ", from t-shirt on" : "") << "). Subject fidelity: mean cosine of the evaluator's features between "
     << "the subject's photos and " << o.n_base << " images for \"a photo of a large sks {class}\" (CLIP-I analogue). "
     << "Instance NCC: best normalised cross-correlation of each image with a photo. Prompt fidelity: the share of "
     << 6 * o.n_context << " images for six contextual prompts with the class and every attribute right (CLIP-T analogue). "
     << o.eval_steps << " DDIM steps, guidance 5. Adapters on to_q, to_k, to_v, to_out.0, conv1 and conv2 (dreambooth's "
     << "default); prior-loss weight " << o.prior_loss_weight << "; batch 4 photos + 4 class images."
     << (o.seeds > 1 ? " Every run trained with " + std::to_string(o.seeds) + " seeds (0 to " + std::to_string(o.seeds - 1) +
                           "); the means are over subjects and seeds, and ± is the standard deviation of the per-seed means."
                     : std::string())
     << "\n\n| Method @ steps | Learning rate | Trainable params | Subject fidelity | Instance NCC | Prompt fidelity | s / step (median) | Peak RSS (MB) |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  char buf[320];
  for (const auto& r : rows) {
    char subject[48], prompt[48];
    std::snprintf(subject, sizeof subject, r.seeds > 1 ? "%.3f ± %.3f" : "%.3f", r.subject, r.subject_sd);
    std::snprintf(prompt, sizeof prompt, r.seeds > 1 ? "%.1f%% ± %.1f" : "%.1f%%", 100 * r.prompt, 100 * r.prompt_sd);
    if (r.params < 0)
      std::snprintf(buf, sizeof buf, "| %s | – | 0 | %s | %.3f | %s | – | – |\n", r.label.c_str(), subject, r.ncc, prompt);
    else
      std::snprintf(buf, sizeof buf, "| %s | %s | %lld | %s | %.3f | %s | %.3f | %.0f |\n", r.label.c_str(), r.lr.c_str(),
                    static_cast<long long>(r.params), subject, r.ncc, prompt, r.seconds_per_step, r.rss);
    md << buf;
  }
  std::snprintf(buf, sizeof buf, "| other test items of the class (real photos) | – | – | %.3f | %.3f | – | – | – |\n", floor.subject,
                floor.ncc);
  md << buf;
  io::write_file_atomic((out / "table.md").string(), md.str());
  io::write_file_atomic((out / "plot.svg").string(), svg_plot(rows, floor.subject, longest));

  // The picture: the first subject's photos, then per method (longest run) and the base pipeline,
  // four images for the base prompt and two contextual prompts.
  const Subject first{subject_views(test.images[first_subject][0]), test.labels[first_subject].item<int64_t>(), "sks"};
  const std::vector<data::Prompt> context = diffusion::contextual_prompts(first.label, first.token);
  const std::vector<std::string> prompts{first.instance_prompt(), context[3].text(), context[4].text()};
  std::vector<torch::Tensor> grid_rows{torch::cat({first.views, torch::zeros({12 - first.views.size(0), 32, 32}, torch::kUInt8)})};
  for (size_t i = 0; i <= methods.size(); ++i) {
    const bool base = i == methods.size();
    const bool full = !base && methods[i].method == "full";
    const fs::path rdir = out / ("subject" + std::to_string(first_subject)) / (base ? "" : methods[i].dir);
    diffusion::Pipeline p = diffusion::Pipeline::load(full ? (rdir / "pipeline").string() : o.model);
    if (!base && !full) io::load_adapter((rdir / "adapter").string(), *p.unet);
    std::vector<std::string> texts;
    std::vector<uint64_t> seeds;
    for (const auto& t : prompts)
      for (uint64_t j = 0; j < 4; ++j) texts.push_back(t), seeds.push_back(j);
    diffusion::SampleOptions so;
    so.steps = o.eval_steps;
    grid_rows.push_back(diffusion::to_uint8(diffusion::sample_images(p, texts, seeds, so)).squeeze(1));
  }
  io::write_png((out / "grid.png").string(), diffusion::image_grid(torch::cat(grid_rows).unsqueeze(1), 12));
  std::string order = "subject photos";
  for (const auto& m : methods) order += ", " + m.label;
  json j = {{"table", (out / "table.md").string()}, {"plot", (out / "plot.svg").string()},
            {"grid", (out / "grid.png").string()}, {"grid_rows", order + ", base pipeline"},
            {"grid_columns", "4 x \"" + prompts[0] + "\", 4 x \"" + prompts[1] + "\", 4 x \"" + prompts[2] + "\""}};
  io::write_file_atomic((out / "grid.json").string(), j.dump(2) + "\n");
  std::cerr << "compare: wrote " << (out / "table.md").string() << ", plot.svg and grid.png\n";
  std::cout << j.dump() << std::endl;
}

}  // namespace

void setup_diffusion_compare(CLI::App* diffusion, Runners& runners) {
  auto o = std::make_shared<DiffusionCompareCli>();
  auto* cmd = diffusion->add_subcommand(
      "compare",
      "The paper's subject-driven comparison (Table 2) on this pipeline: every method fine-tunes on the same subjects\n"
      "(the first Fashion-MNIST test item of each class) for the longest of --steps, saving the shorter lengths on the way,\n"
      "and each run is measured by eval-subject. Writes OUT/table.md, OUT/plot.svg (subject vs prompt fidelity), OUT/grid.png\n"
      "and every run's files; finished runs are reused when the same command runs again.\n"
      "Budgets: gsoft and double_gsoft b=16, oft b=16, boft b=16 with 2 factors, lora r=16. Learning rates: 2e-4 for\n"
      "gsoft, 3e-4 for the other adapters, 1e-4 for full; METHOD@LR in --methods adds a run of METHOD at another rate (its own row, in\n"
      "OUT/subjectN/METHOD-lrLR), so a rate sweep is one command. A cached run at another rate than asked is refused.\n"
      "Example: gsoft diffusion compare --subjects 10 --steps 100 300 --out docs/diffusion/compare\n"
      "         gsoft diffusion compare --methods gsoft,lora --seeds 2     (a second training seed)\n"
      "         gsoft diffusion compare --methods gsoft,gsoft@1e-3,lora,lora@1e-3   (two rates per method)");
  cmd->add_option("--model", o->model, "Pipeline directory")->capture_default_str()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", o->out, "Output directory")->capture_default_str();
  cmd->add_option("--data", o->data, "Fashion-MNIST directory");
  cmd->add_option("--subjects", o->subjects, "Subjects (classes t-shirt, trouser, ... in order)")->capture_default_str()
      ->check(CLI::Range(1, 10));
  cmd->add_option("--methods", o->methods, "Methods, each METHOD or METHOD@LR (gsoft, double_gsoft, oft, boft, lora, full)")->delimiter(',')->capture_default_str();
  cmd->add_option("--steps", o->steps, "Training lengths")->capture_default_str();
  cmd->add_option("--seeds", o->seeds,
                  "Training seeds per run (dreambooth's --seed 0, 1, ...). Seed 0 is the single-seed grid's run; seed S\n"
                  "lives in OUT/subjectN/METHOD-seedS. The table then gives means over subjects and seeds, and the\n"
                  "standard deviation of the per-seed means")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_option("--n-base", o->n_base, "Base-prompt images per evaluation")->capture_default_str();
  cmd->add_option("--n", o->n_context, "Images per contextual prompt")->capture_default_str();
  cmd->add_option("--eval-steps", o->eval_steps, "DDIM steps of the evaluations")->capture_default_str();
  cmd->add_option("--num-class-images", o->class_images, "Class images for prior preservation")->capture_default_str();
  cmd->add_option("--prior-loss-weight", o->prior_loss_weight,
                  "Weight of the class-image loss in every run (0.2: at dreambooth's default 1 no method learnt the\n"
                  "subject on this pipeline; docs/diffusion.md has the measurements)")
      ->capture_default_str();
  runners.push_back({cmd, [o] { run_diffusion_compare(*o); }});
}

}  // namespace gsoft::cli
