// Uses only the installed public API: apply an identity-initialised GS orthogonal matrix.
#include <gsoft/gsoft.h>
#include <torch/torch.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  gsoft::GSOrthogonal q(gsoft::GSOrthogonalOptions(16).block_size(4));
  auto x = torch::randn({3, 16});
  auto y = q->forward(x);
  if (!torch::allclose(x, y)) {
    std::cerr << "identity-initialised GS matrix changed its input\n";
    return 1;
  }
  std::cout << "consumer ok (gsoft " << GSOFT_VERSION << ")\n";
  return 0;
}
