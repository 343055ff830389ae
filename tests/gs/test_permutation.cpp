#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/gs/permutation.h"

using gsoft::Permutation;

TEST(Permutation, PerfectShuffleFollowsDefinition52) {
  const int64_t k = 3, n = 12;
  auto p = Permutation::perfect_shuffle(k, n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(p[i], (i % k) * (n / k) + i / k);
}

TEST(Permutation, PerfectShuffleIsReshapeTranspose) {
  const int64_t k = 4, n = 24;
  auto x = torch::arange(2 * n, torch::kFloat64).reshape({2, n});
  auto expect = x.reshape({2, k, n / k}).transpose(1, 2).reshape({2, n});
  EXPECT_TRUE(torch::equal(Permutation::perfect_shuffle(k, n).apply(x), expect));
}

TEST(Permutation, InverseOfShuffleIsTheOtherShuffle) {
  for (auto [k, n] : std::vector<std::pair<int64_t, int64_t>>{{3, 12}, {8, 768}, {96, 768}, {5, 5}}) {
    EXPECT_EQ(Permutation::perfect_shuffle(k, n).inverse(), Permutation::perfect_shuffle(n / k, n));
  }
}

TEST(Permutation, MatrixMatchesGatherConvention) {
  Permutation p({2, 0, 3, 1});
  auto m = p.matrix(torch::kFloat64);
  auto x = torch::randn({5, 4}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(torch::matmul(x, m.t()), p.apply(x)));
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(m[i][p[i]].item<double>(), 1.0);
  EXPECT_TRUE(torch::allclose(p.inverse().matrix(torch::kFloat64), m.t()));
}

TEST(Permutation, ProductIsMatrixProduct) {
  Permutation a({2, 0, 3, 1}), b({1, 3, 0, 2});
  auto m = torch::matmul(a.matrix(torch::kFloat64), b.matrix(torch::kFloat64));
  EXPECT_TRUE(torch::equal((a * b).matrix(torch::kFloat64), m));
  EXPECT_TRUE((a * a.inverse()).is_identity());
}

TEST(Permutation, RejectsNonPermutationsWithValues) {
  try {
    Permutation({0, 2, 2});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("value 2 appears more than once"), std::string::npos) << e.what();
  }
  try {
    Permutation({0, 5});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("entry 1 is 5"), std::string::npos) << e.what();
  }
  try {
    Permutation::perfect_shuffle(5, 12);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("k (5)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("n (12)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Permutation({0, 1}) * Permutation({0, 1, 2}), std::invalid_argument);
  EXPECT_THROW(Permutation({1, 0}).apply(torch::zeros({3})), std::invalid_argument);
}
