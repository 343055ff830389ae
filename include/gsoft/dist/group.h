#pragma once
// Data-parallel training over processes and hosts with libtorch's own c10d: a TCPStore rendezvous
// at the master's address and a ProcessGroupGloo (ProcessGroupNCCL where libtorch has CUDA; only
// Gloo is tested here). Every rank runs the same program on its share of each global batch; the
// gradients of the trainable tensors are summed across ranks, so each rank takes the same
// optimiser step and the replicas stay identical.
//
// A Group of world size 1 communicates with no one: every call is a local no-op, so training code
// calls the same functions with or without it.
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gsoft::dist {

struct DistOptions {
  std::string backend = "gloo";  // gloo or nccl
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  // How long a collective, or the rendezvous, waits for the other ranks before it fails.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  // The largest gradient bucket of GradReducer: smaller buckets start sooner during the backward,
  // larger ones cost fewer messages (one bucket: the exchange waits for the whole backward).
  int64_t bucket_bytes = int64_t{1} << 20;

  // RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as torchrun sets them; world size 1 when
  // WORLD_SIZE is unset. Throws naming the variable when one is set but malformed.
  static DistOptions from_env();
  // Throws std::invalid_argument naming the field and its value.
  void validate() const;
};

// Byte and time totals of the collectives a Group ran (for the benchmarks and the logs).
struct CommStats {
  int64_t all_reduce_calls = 0;
  int64_t all_reduce_bytes = 0;
  double all_reduce_seconds = 0;
};

class Group {
 public:
  // Joins the group: rank 0 hosts the store; every rank waits (up to the timeout) for all. A port
  // in use, an unreachable master or a timeout is a std::runtime_error naming the address.
  explicit Group(const DistOptions& options);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int64_t rank() const { return options_.rank; }
  int64_t world_size() const { return options_.world_size; }
  bool is_main() const { return options_.rank == 0; }
  const DistOptions& options() const { return options_; }

  // Sums a contiguous tensor over the ranks, in place (gradients go through GradReducer).
  void all_reduce_sum(const torch::Tensor& t);
  // The sum over ranks of each value.
  std::vector<double> all_reduce_values(const std::vector<double>& values);
  // Copies rank `root`'s tensors into every rank's, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors, int64_t root = 0);
  // The rows of every rank's `t` concatenated in rank order; dim 0 may differ between ranks, the
  // other dims and the dtype may not.
  torch::Tensor all_gather_rows(const torch::Tensor& t);
  // Throws std::invalid_argument on every rank when some rank's `value` differs from rank 0's,
  // naming `what`, that rank and both values: options that must agree between ranks.
  void check_same(const std::string& what, const std::string& value);
  void barrier();

  const CommStats& stats() const { return stats_; }

 private:
  friend class GradReducer;
  struct Impl;
  DistOptions options_;
  std::unique_ptr<Impl> impl_;
  CommStats stats_;
};

// The three steps every data-parallel training loop shares, each a no-op alone:
// this rank's mean loss over `rows` of a global batch of `total` rows, weighted so that the ranks'
// losses (and gradients) sum to the global batch's mean;
torch::Tensor share_weighted(const Group& group, const torch::Tensor& loss, int64_t rows, int64_t total);
// after the backward, the gradients summed over the ranks (GradReducer, below);
// at the start, that every rank resumes from rank 0's step of `checkpoint` (each rank reads it, so
// it must be on storage every host can read);
void check_start(Group& group, int64_t step, const std::string& checkpoint);
// and whether any rank asks to stop (Ctrl-C on one rank stops every rank after the same step).
bool any_rank(Group& group, bool flag);

// Sums the gradients of `params` over the ranks while the backward still runs, as PyTorch's DDP
// does: a hook on each tensor copies its gradient into a bucket as autograd produces it, and a
// bucket's all-reduce starts as soon as it is full, so the transfer of the last layers' gradients
// overlaps the backward through the first. Buckets hold `params` in reverse order (about the order
// in which the backward produces them) and start strictly in bucket order, so every rank issues
// the same collectives in the same order even when its gradients arrive in another order, or not
// at all (a rank with no rows this step). Each bucket also carries a flag per tensor, so a
// gradient undefined on every rank stays undefined (the optimiser then skips it, as in one
// process), and one defined on some ranks only counts as zero on the others.
// With a group of one it registers nothing and finish() returns `values` unchanged.
class GradReducer {
 public:
  // bucket_bytes 0: the group's options().bucket_bytes.
  GradReducer(Group& group, std::vector<torch::Tensor> params, int64_t bucket_bytes = 0);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // After this step's backward (one per step, gradients zeroed to undefined before it): starts the
  // buckets not started yet, waits for all, and leaves in each tensor's .grad the sum over the
  // ranks (a view of its bucket). Returns each of `values` (the step's loss, counts) summed too.
  std::vector<double> finish(const std::vector<double>& values);

  int64_t buckets() const;

 private:
  struct State;
  void arrived(size_t k, const torch::Tensor& grad);  // the hook
  void start(size_t bucket);
  Group& group_;
  std::unique_ptr<State> state_;
};

// The [begin, end) slice of n items that `rank` of `world` takes: contiguous, in rank order, sizes
// differing by at most one, so the slices of all ranks are the n items in their order.
std::pair<size_t, size_t> shard_range(size_t n, int64_t rank, int64_t world);

}  // namespace gsoft::dist
