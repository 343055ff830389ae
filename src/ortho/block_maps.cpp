#include "gsoft/ortho/block_maps.h"

#include <torch/torch.h>

#include "gsoft/core/error.h"

namespace gsoft {

std::string to_string(Parametrization p) {
  switch (p) {
    case Parametrization::Cayley: return "cayley";
    case Parametrization::Exp: return "exp";
    case Parametrization::CayleyNeumann: return "cayley_neumann";
    case Parametrization::Free: return "free";
  }
  return "unknown";
}

Parametrization parametrization_from_string(const std::string& s) {
  if (s == "cayley") return Parametrization::Cayley;
  if (s == "exp") return Parametrization::Exp;
  if (s == "cayley_neumann") return Parametrization::CayleyNeumann;
  if (s == "free") return Parametrization::Free;
  throw std::invalid_argument("unknown parametrization '" + s +
                              "'; expected one of: cayley, exp, cayley_neumann, free");
}

namespace functional {
namespace {
void check_square(const torch::Tensor& a, const char* op) {
  GSOFT_CHECK(a.defined() && a.dim() >= 2 && a.size(-1) == a.size(-2), op,
              ": expected square blocks (..., b, b), got shape ",
              a.defined() ? format_shape(a.sizes()) : std::string("undefined"));
}
torch::Tensor eye_like(const torch::Tensor& a) {
  return torch::eye(a.size(-1), a.options()).expand_as(a);
}
}  // namespace

torch::Tensor skew(const torch::Tensor& a) {
  check_square(a, "skew");
  return 0.5 * (a - a.transpose(-1, -2));
}

torch::Tensor cayley(const torch::Tensor& a) {
  check_square(a, "cayley");
  auto s = skew(a);
  auto eye = eye_like(a);
  // (I+S) and (I-S) commute, so (I+S)(I-S)^-1 = (I-S)^-1 (I+S): one batched solve.
  return at::linalg_solve(eye - s, eye + s);
}

torch::Tensor block_exp(const torch::Tensor& a) {
  check_square(a, "block_exp");
  return at::linalg_matrix_exp(skew(a));
}

torch::Tensor cayley_neumann(const torch::Tensor& a, int64_t terms) {
  check_square(a, "cayley_neumann");
  GSOFT_CHECK(terms >= 2, "cayley_neumann: terms must be at least 2, got ", terms);
  auto s = skew(a);
  auto out = eye_like(a) + 0 * s;  // materialise, keep the graph
  auto power = s;
  for (int64_t k = 1; k <= terms - 1; ++k) {
    out = out + (k == terms - 1 ? 1.0 : 2.0) * power;
    if (k < terms - 1) power = torch::matmul(power, s);
  }
  return out;
}

torch::Tensor orthogonal_blocks(const torch::Tensor& a, Parametrization p, int64_t neumann_terms) {
  switch (p) {
    case Parametrization::Cayley: return cayley(a);
    case Parametrization::Exp: return block_exp(a);
    case Parametrization::CayleyNeumann: return cayley_neumann(a, neumann_terms);
    case Parametrization::Free: return a;
  }
  throw std::invalid_argument("orthogonal_blocks: unknown parametrization");
}

double orthogonality_error(const torch::Tensor& blocks) {
  check_square(blocks, "orthogonality_error");
  auto b = blocks.detach().to(torch::kFloat64);
  auto g = torch::matmul(b.transpose(-1, -2), b) - eye_like(b);
  return g.abs().max().item<double>();
}

}  // namespace functional
}  // namespace gsoft
