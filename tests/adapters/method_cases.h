#pragma once
// One table of adapter configurations; every row runs through the shared tests
// (tests/adapters/test_methods.cpp), as in PEFT's TEST_CASES.
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"

namespace gsoft::test {

struct MethodCase {
  std::string name;
  AdapterConfig config;
  // Expected trainable parameters for AdaptableLinear(kIn, kOut).
  int64_t expected_params;
};

constexpr int64_t kIn = 32, kOut = 48;

inline AdapterConfig make_config(Method m) {
  AdapterConfig c;
  c.method = m;
  c.target_modules = {"layer"};
  return c;
}

inline std::vector<MethodCase> method_cases() {
  std::vector<MethodCase> cases;
  auto add = [&](std::string name, AdapterConfig c, int64_t n) { cases.push_back({std::move(name), std::move(c), n}); };
  {
    auto c = make_config(Method::GSOFT);
    c.block_size = 4;
    add("gsoft_cayley_official", c, 2 * kIn * 4 + kOut);
    c.layout = Layout::Paper;
    c.parametrization = Parametrization::Exp;
    add("gsoft_exp_paper", c, 2 * kIn * 4 + kOut);
    c.parametrization = Parametrization::CayleyNeumann;
    add("gsoft_cayley_neumann", c, 2 * kIn * 4 + kOut);
    c.parametrization = Parametrization::Free;
    c.scale = false;
    add("gsoft_free_noscale", c, 2 * kIn * 4);
  }
  {
    auto c = make_config(Method::DoubleGSOFT);
    c.nblocks = 4;  // b_in = 8, b_out = 12
    add("double_gsoft_nblocks", c, 2 * kIn * 8 + 2 * kOut * 12 + kOut);
    c.nblocks = 0;
    c.block_size = 4;
    add("double_gsoft_block_size", c, 2 * kIn * 4 + 2 * kOut * 4 + kOut);
  }
  {
    auto c = make_config(Method::OFT);
    c.block_size = 8;
    add("oft_neumann", c, (kIn / 8) * 8 * 7 / 2);
    c.use_cayley_neumann = false;
    add("oft_exact", c, (kIn / 8) * 8 * 7 / 2);
  }
  {
    auto c = make_config(Method::BOFT);
    c.block_size = 4;
    add("boft_m1", c, kIn * 4 + kOut);
    c.boft_n_butterfly_factor = 2;
    add("boft_m2", c, 2 * kIn * 4 + kOut);
  }
  {
    auto c = make_config(Method::LoRA);
    c.r = 4;
    c.lora_alpha = 8;
    add("lora_r4", c, 4 * (kIn + kOut));
  }
  return cases;
}

}  // namespace gsoft::test
