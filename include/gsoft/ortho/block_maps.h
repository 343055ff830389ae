#pragma once
// Maps from free (nblocks, b, b) parameters A to (nblocks, b, b) blocks, batched over blocks and
// differentiable. With S = (A - A^T)/2 (the authors' code; the paper writes A - A^T):
//
//   cayley          C(A) = (I + S)(I - S)^-1                (authors' code and the paper)
//   exp             expm(S)
//   cayley_neumann  I + 2S + 2S^2 + ... + 2S^(k-2) + S^(k-1)  (k terms, OFTv2 / PEFT >= 0.18)
//                   = (I + S)(I + S + ... + S^(k-2)) ~ (I + S)(I - S)^-1, the same orientation as
//                   `cayley`. Exact only as k -> infinity and only for ||S|| < 1.
//   free            A itself (no constraint)
//
// Orientation: PEFT's exact OFT/BOFT path computes (I - S)(I + S)^-1 = C(A)^T, the inverse
// rotation; its Neumann path approximates (I + S)(I - S)^-1. Adapters that load PEFT files
// apply that transpose where PEFT does; these maps are always in the orientation above.
#include <torch/types.h>

#include <string>

namespace gsoft {

enum class Parametrization { Cayley, Exp, CayleyNeumann, Free };

std::string to_string(Parametrization p);
// Accepts cayley, exp, cayley_neumann, free; throws listing them otherwise.
Parametrization parametrization_from_string(const std::string& s);

namespace functional {

// (..., b, b) -> (A - A^T) / 2
torch::Tensor skew(const torch::Tensor& a);
torch::Tensor cayley(const torch::Tensor& a);
torch::Tensor block_exp(const torch::Tensor& a);
// terms >= 2.
torch::Tensor cayley_neumann(const torch::Tensor& a, int64_t terms);
// Dispatches on p; neumann_terms is used by CayleyNeumann only.
torch::Tensor orthogonal_blocks(const torch::Tensor& a, Parametrization p,
                                int64_t neumann_terms = 5);
// max over blocks of |B^T B - I|, a scalar double.
double orthogonality_error(const torch::Tensor& blocks);

}  // namespace functional
}  // namespace gsoft
