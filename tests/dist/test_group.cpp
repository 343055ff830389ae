// dist::GradReducer with two ranks in one process (one thread each, Gloo on loopback): the gradients
// it leaves are the sums of the ranks' own gradients, including one defined on one rank only, one
// defined on none and a rank that ran no backward; its buckets start while the backward runs.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "gsoft/dist/group.h"
#include "support/ports.h"

namespace {

using gsoft::dist::DistOptions;
using gsoft::dist::GradReducer;
using gsoft::dist::Group;

using gsoft::test::free_port;

// Runs body(group) as rank 0 and rank 1 of a fresh group, each on its own thread; failures of
// either rank are reported with its number.
void two_ranks(const std::function<void(Group&)>& body) {
  const int port = free_port();
  std::string errors[2];
  auto run = [&](int rank) {
    try {
      DistOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.master_port = port;
      o.timeout = std::chrono::seconds(30);
      Group g(o);
      body(g);
    } catch (const std::exception& e) {
      errors[rank] = e.what();
    }
  };
  std::thread r1(run, 1);
  run(0);
  r1.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

// Four parameters: w1 and w2 used by both ranks, w3 by rank 0 only, w4 by neither.
struct Params {
  torch::Tensor w1, w2, w3, w4;
  explicit Params(uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);  // its own: the two ranks' threads draw at once
    w1 = torch::randn({64, 48}, gen, torch::kFloat).requires_grad_();
    w2 = torch::randn({48, 8}, gen, torch::kFloat).requires_grad_();
    w3 = torch::randn({8}, gen, torch::kFloat).requires_grad_();
    w4 = torch::randn({5}, gen, torch::kFloat).requires_grad_();
  }
  std::vector<torch::Tensor> all() const { return {w1, w2, w3, w4}; }
};

torch::Tensor loss_of(const Params& p, int rank) {
  const torch::Tensor x = torch::full({3, 64}, 0.1 * (rank + 1));
  torch::Tensor y = x.matmul(p.w1).tanh().matmul(p.w2);
  if (rank == 0) y = y * p.w3;
  return y.pow(2).sum();
}

TEST(GradReducer, LeavesTheSumOfTheRanksGradientsAndStartsDuringTheBackward) {
  // Each rank's own gradients, without a group.
  std::vector<torch::Tensor> own[2];
  for (int rank = 0; rank < 2; ++rank) {
    Params p(7);
    loss_of(p, rank).backward();
    own[rank] = {p.w1.grad().clone(), p.w2.grad().clone()};
    EXPECT_EQ(p.w3.grad().defined(), rank == 0);
    if (rank == 0) own[rank].push_back(p.w3.grad().clone());
    EXPECT_FALSE(p.w4.grad().defined());
  }
  two_ranks([&](Group& g) {
    Params p(7);
    // Small buckets: w4, w3 and w2 share one, w1 (12 KB) has its own.
    GradReducer reducer(g, p.all(), 4096);
    EXPECT_EQ(reducer.buckets(), 2);
    for (int step = 0; step < 3; ++step) {  // buffers are reused across steps
      for (const auto& t : p.all()) t.mutable_grad() = torch::Tensor();
      loss_of(p, static_cast<int>(g.rank())).backward();
      const int64_t started = g.stats().all_reduce_calls, buckets = reducer.buckets();
      const double v = reducer.finish({1.0 + static_cast<double>(g.rank())})[0];
      EXPECT_EQ(v, 3.0);
      // Buckets start in order. In the first step w4, which no rank uses, holds the first bucket
      // and so both back until finish (2 buckets and the values there); after it, w4 has a bucket
      // of its own at the end, and on rank 0 the other two start during the backward. Rank 1 never
      // makes w3's gradient, so its first bucket still waits for finish.
      const int64_t in_finish = g.stats().all_reduce_calls - started;
      EXPECT_EQ(in_finish, step == 0 || g.rank() == 1 ? buckets + 1 : 2) << "step " << step;
      if (step > 0) EXPECT_EQ(reducer.buckets(), 3);
      EXPECT_TRUE(torch::allclose(p.w1.grad(), own[0][0] + own[1][0], 1e-5, 1e-5));
      EXPECT_TRUE(torch::allclose(p.w2.grad(), own[0][1] + own[1][1], 1e-5, 1e-5));
      EXPECT_TRUE(torch::allclose(p.w3.grad(), own[0][2], 1e-5, 1e-5));  // rank 0's alone
      EXPECT_FALSE(p.w4.grad().defined());                               // no rank's
    }
  });
}

TEST(GradReducer, ARankWithoutBackwardTakesPartWithZeros) {
  two_ranks([&](Group& g) {
    Params p(3);
    GradReducer reducer(g, p.all());
    std::vector<torch::Tensor> mine;
    if (g.rank() == 0) {
      loss_of(p, 0).backward();
      for (const auto& t : p.all()) mine.push_back(t.grad().defined() ? t.grad().clone() : torch::Tensor());
    }
    const double v = reducer.finish({g.rank() == 0 ? 2.5 : 0.0})[0];
    EXPECT_EQ(v, 2.5);
    if (g.rank() == 0)
      for (size_t k = 0; k < 3; ++k) EXPECT_TRUE(torch::equal(p.all()[k].grad(), mine[k])) << k;
    else
      EXPECT_TRUE(p.w1.grad().defined());
    EXPECT_FALSE(p.w4.grad().defined());
  });
}

TEST(GradReducer, AGradientTwiceInOneStepIsAnError) {
  two_ranks([&](Group& g) {
    Params p(5);
    GradReducer reducer(g, p.all());
    loss_of(p, 1).backward();
    EXPECT_THROW(loss_of(p, 1).backward(), std::exception);
    reducer.finish({});
  });
}

TEST(GradReducer, AloneChangesNothing) {
  Group solo{DistOptions{}};
  Params p(9);
  GradReducer reducer(solo, p.all());
  EXPECT_EQ(reducer.buckets(), 0);
  loss_of(p, 0).backward();
  const torch::Tensor g1 = p.w1.grad().clone();
  EXPECT_EQ(reducer.finish({4.0})[0], 4.0);
  EXPECT_TRUE(torch::equal(p.w1.grad(), g1));
}

}  // namespace
