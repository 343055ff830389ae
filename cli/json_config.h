#pragma once
// `--config run.json` for subcommands: a flat JSON object whose keys are the long option names
// ("block-size" or "block_size") and whose values are strings, numbers, booleans or arrays.
// Options given on the command line win over the file. resolved_options writes the same format,
// so a run's resolved config can be passed back with --config. (CLI11 2.1 applies config files
// only to the top-level app, so the file becomes arguments before parsing.)
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gsoft::cli {

// Replaces "--config FILE" (or "--config=FILE") in the arguments by the options in FILE, skipping
// those also given on the command line, so flags win over the file. A true boolean becomes the
// bare flag, false is left out, an array repeats the option. Throws std::runtime_error naming the
// file for anything else.
inline std::vector<std::string> expand_json_config(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path;
    if (args[i] == "--config") {
      if (i + 1 == args.size()) throw std::runtime_error("--config needs a file");
      path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else {
      out.push_back(args[i]);
      continue;
    }
    std::ifstream in(path);
    if (!in) throw std::runtime_error("--config " + path + ": cannot open");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("--config " + path + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw std::runtime_error("--config " + path + ": expected a JSON object of {\"option-name\": value}");
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string name = it.key();
      std::replace(name.begin(), name.end(), '_', '-');
      const std::string flag = "--" + name;
      const bool given = std::any_of(args.begin(), args.end(), [&](const std::string& a) {
        return a == flag || a.rfind(flag + "=", 0) == 0;
      });
      if (given) continue;
      auto scalar = [&](const nlohmann::json& v) {
        if (v.is_string()) return v.get<std::string>();
        if (v.is_number()) return v.dump();
        throw std::runtime_error("--config " + path + ": '" + it.key() + "' must be a string, number, boolean or array, found " +
                                 v.dump());
      };
      const auto& v = it.value();
      if (v.is_boolean()) {
        if (v.get<bool>()) out.push_back(flag);
      } else if (v.is_array()) {
        for (const auto& e : v) out.push_back(flag), out.push_back(scalar(e));
      } else if (!v.is_null()) {
        out.push_back(flag);
        out.push_back(scalar(v));
      }
    }
  }
  return out;
}

// Lists --config in the command's help; main() expands it before parsing (expand_json_config).
inline void add_json_config(CLI::App* cmd) {
  static std::string unused;
  cmd->add_option("--config", unused,
                  "Read options from a JSON file of {\"option-name\": value} (run_config.json of a run works);\n"
                  "options on the command line win");
}

// Every option of `cmd` with its value (given or default), as JSON that --config reads back.
inline nlohmann::json resolved_options(const CLI::App* cmd) {
  nlohmann::json j = nlohmann::json::object();
  for (const CLI::Option* opt : cmd->get_options()) {
    if (opt->get_lnames().empty() || opt->get_lnames()[0] == "help" || opt->get_lnames()[0] == "config") continue;
    const std::string name = opt->get_lnames()[0];
    std::vector<std::string> values = opt->count() > 0 ? opt->reduced_results() : std::vector<std::string>{};
    if (values.empty()) {
      if (opt->get_expected_max() == 0) {
        j[name] = false;  // a flag not given
        continue;
      }
      if (opt->get_default_str().empty()) continue;
      values = {opt->get_default_str()};
      if (opt->get_expected_max() > 1) {
        // A list's default reads "32 64 128" or "[32,64,128]": one value per element.
        std::string d = opt->get_default_str();
        for (char& c : d)
          if (c == '[' || c == ']' || c == ',') c = ' ';
        std::istringstream in(d);
        values.clear();
        for (std::string v; in >> v;) values.push_back(v);
      }
    }
    if (opt->get_expected_max() == 0) {
      j[name] = values[0] == "true" || values[0] == "1";
      continue;
    }
    auto to_json = [](const std::string& s) {
      char* end = nullptr;
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size()) return nlohmann::json(i);
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size() && s != "inf" && s != "nan") return nlohmann::json(d);
      return nlohmann::json(s);
    };
    if (opt->get_expected_max() > 1 || values.size() > 1) {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& v : values) a.push_back(to_json(v));
      j[name] = a;
    } else {
      j[name] = to_json(values[0]);
    }
  }
  return j;
}

}  // namespace gsoft::cli
