#pragma once
// Shared test helpers: finite-difference gradient checks and test-data paths.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gsoft/gs/chain.h"

namespace gsoft::test {

// An empty directory under the system temp directory, unique to this test process.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("gsoft_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

// A safetensors file from a raw header and data, well-formed or not: 8-byte little-endian header
// length, header, data.
inline void write_raw_safetensors(const std::filesystem::path& p, const std::string& header, const std::string& data) {
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  write_text(p, len + header + data);
}

// An IDX file of unsigned bytes: magic 0 0 8 <rank>, big-endian dimensions, data.
inline std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string s{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((d >> shift) & 0xFF);
  s.append(data.begin(), data.end());
  return s;
}

// `message` contains `part`.
#define EXPECT_HAS(message, part) EXPECT_NE((message).find(part), std::string::npos) << (message)

// The message of the exception f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs a shell command with stdout and stderr going to `log`; returns the exit status (-1 if it
// did not exit normally).
inline int run_command(const std::string& command, const std::filesystem::path& log) {
  const std::string full = command + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline Permutation random_permutation(int64_t n) {
  auto t = torch::randperm(n, torch::kLong);
  return Permutation(std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n));
}

// One random (nblocks, rows, cols) tensor per factor of the chain.
inline std::vector<torch::Tensor> random_blocks(const GSChain& c, torch::ScalarType dt = torch::kFloat64,
                                                double scale = 1.0) {
  std::vector<torch::Tensor> out;
  for (const auto& f : c.factors()) out.push_back(scale * torch::randn(f.tensor_shape(), dt));
  return out;
}

inline std::string data_path(const std::string& rel) { return std::string(GSOFT_TEST_DATA) + "/" + rel; }

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Checks autograd gradients of the scalar f(inputs) against central differences in float64.
// Inputs must be float64 leaves; they are set to require grad here.
inline void expect_gradients_match_fd(
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f,
    std::vector<torch::Tensor> inputs, double eps = 1e-6, double tol = 1e-6) {
  for (auto& t : inputs) {
    ASSERT_EQ(t.scalar_type(), torch::kFloat64);
    t = t.detach().clone().requires_grad_(true);
  }
  auto out = f(inputs);
  ASSERT_EQ(out.numel(), 1);
  auto grads = torch::autograd::grad({out}, inputs, {}, false, false, true);
  torch::NoGradGuard g;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto flat = inputs[i].view({-1});
    auto analytic = grads[i].defined() ? grads[i].reshape({-1}) : torch::zeros_like(flat);
    for (int64_t j = 0; j < flat.numel(); ++j) {
      const double orig = flat[j].item<double>();
      flat[j] = orig + eps;
      const double plus = f(inputs).item<double>();
      flat[j] = orig - eps;
      const double minus = f(inputs).item<double>();
      flat[j] = orig;
      const double numeric = (plus - minus) / (2 * eps);
      const double a = analytic[j].item<double>();
      ASSERT_NEAR(a, numeric, tol * std::max(1.0, std::abs(numeric)))
          << "input " << i << " element " << j;
    }
  }
}

}  // namespace gsoft::test
