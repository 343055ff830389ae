#pragma once
// The LipConvNet architecture flags shared by `lipconv train`, `lipconv info` and `bench lipconv`.
#include <CLI/CLI.hpp>

#include <string>

#include "gsoft/conv/lipconvnet.h"

namespace gsoft::cli {

struct LipConvArchOptions {
  std::string conv = "soc", groups = "4", activation = "maxmin-permuted", layout = "authors";
  int64_t depth = 15, init_channels = 32;
  bool unpaired = false;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--conv", conv, "Orthogonal convolution: soc or gs-soc")->capture_default_str()
        ->check(CLI::IsMember({"soc", "gs-soc"}));
    cmd->add_option("--groups", groups,
                    "GS-SOC groups: 'a' = (a,-), a shuffle then a grouped 3x3 SOC; 'a,b' = (a,b), then a shuffle and a\n"
                    "grouped 1x1 SOC with b groups")->capture_default_str();
    cmd->add_option("--depth", depth, "LipConvNet-N: N blocks, a multiple of 5")->capture_default_str();
    cmd->add_option("--init-channels", init_channels, "Channels of the first level (doubled by each level)")->capture_default_str();
    cmd->add_option("--activation", activation, "maxmin (pairs c, c+C/2) or maxmin-permuted (pairs 2j, 2j+1)")
        ->capture_default_str()->check(CLI::IsMember({"maxmin", "maxmin-permuted"}));
    cmd->add_flag("--unpaired", unpaired, "GS-SOC: shuffle single channels, not MaxMin pairs");
    cmd->add_option("--shuffle-layout", layout, "GS-SOC shuffle: authors (their channel_shuffle) or paper (P_(k,n))")
        ->capture_default_str()->check(CLI::IsMember({"authors", "paper"}));
  }

  conv::LipConvNetOptions to_options(int64_t in_channels, int64_t input_size, int64_t classes) const {
    conv::LipConvNetOptions o;
    o.conv(conv::parse_conv_kind(conv)).depth(depth).init_channels(init_channels).in_channels(in_channels)
        .input_size(input_size).num_classes(classes).activation(conv::parse_activation(activation)).paired(!unpaired)
        .layout(conv::parse_shuffle_layout(layout));
    const auto comma = groups.find(',');
    auto number = [&](const std::string& s) {
      try {
        size_t used = 0;
        const long long v = std::stoll(s, &used);
        if (used == s.size() && v >= 1) return static_cast<int64_t>(v);
      } catch (const std::exception&) {
      }
      throw std::invalid_argument("--groups '" + groups + "': expected 'a' or 'a,b' with positive integers");
    };
    o.groups1(number(groups.substr(0, comma)));
    o.groups2(comma == std::string::npos ? 0 : number(groups.substr(comma + 1)));
    return o;
  }
};

}  // namespace gsoft::cli
