#include "gsoft/dist/group.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>

#include "gsoft/core/error.h"

namespace gsoft::dist {
namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  try {
    size_t used = 0;
    const int64_t x = std::stoll(v, &used);
    if (used == std::string(v).size()) return x;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(std::string("environment variable ") + name + " is '" + v + "', expected an integer");
}

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

}  // namespace

DistOptions DistOptions::from_env() {
  DistOptions o;
  o.world_size = env_int("WORLD_SIZE", 1);
  o.rank = env_int("RANK", 0);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.master_addr = a;
  o.master_port = env_int("MASTER_PORT", o.master_port);
  return o;
}

void DistOptions::validate() const {
  GSOFT_CHECK(world_size >= 1, "distributed: world size must be at least 1, got ", world_size);
  GSOFT_CHECK(rank >= 0 && rank < world_size, "distributed: rank must be in [0, ", world_size, "), got ", rank);
  GSOFT_CHECK(master_port > 0 && master_port < 65536, "distributed: master port must be in [1, 65535], got ",
              master_port);
  GSOFT_CHECK(!master_addr.empty(), "distributed: the master address is empty");
  GSOFT_CHECK(backend == "gloo" || backend == "nccl", "distributed: backend must be gloo or nccl, got '", backend, "'");
  GSOFT_CHECK(timeout.count() > 0, "distributed: the timeout must be positive");
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  int64_t checks = 0;  // makes each check_same's store keys unique
};

Group::Group(const DistOptions& options) : options_(options) {
  options_.validate();
  if (options_.world_size == 1) return;
  impl_ = std::make_unique<Impl>();
  const std::string where = options_.master_addr + ":" + std::to_string(options_.master_port);
  const std::string who = "rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(options_.master_port);
  so.isServer = options_.rank == 0;
  so.numWorkers = static_cast<size_t>(options_.world_size);
  so.waitWorkers = true;
  so.timeout = options_.timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, so);
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    if (options_.rank == 0 && msg.find("already in use") != std::string::npos)
      throw std::runtime_error(who + ": the master port " + where + " is already in use; choose another --master-port");
    throw std::runtime_error(who + (options_.rank == 0 ? ": the rendezvous at " + where + " did not gather all " +
                                                             std::to_string(options_.world_size) + " ranks"
                                                       : ": could not reach the master at " + where) +
                             " within " + std::to_string(seconds(options_.timeout)) + " s (" + msg.substr(0, 300) + ")");
  }
  if (options_.backend == "nccl")
    throw std::runtime_error("distributed: backend nccl needs a CUDA build of libtorch; this one has Gloo only "
                             "(use --backend gloo)");
  auto go = c10d::ProcessGroupGloo::Options::create(options_.timeout);
  // On one machine, loopback; across hosts, the interface of this host's name (GLOO_SOCKET_IFNAME
  // overrides, as in PyTorch).
  go->devices.push_back(is_loopback(options_.master_addr) && !std::getenv("GLOO_SOCKET_IFNAME")
                            ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                            : c10d::ProcessGroupGloo::createDefaultDevice());
  try {
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, static_cast<int>(options_.rank),
                                                           static_cast<int>(options_.world_size), go);
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": connecting the Gloo process group failed: " + std::string(e.what()).substr(0, 300));
  }
}

Group::~Group() = default;

namespace {

// Runs a collective; a failure (a rank that died, a timeout) becomes one clear error.
void wait_for(const c10::intrusive_ptr<c10d::Work>& work, const DistOptions& o, const char* what) {
  try {
    work->wait(o.timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(o.rank) + ": " + what + " across " + std::to_string(o.world_size) +
                             " ranks failed (" + std::string(e.what()).substr(0, 300) +
                             "). Another rank stopped or did not answer within " +
                             std::to_string(o.timeout.count() / 1000) + " s; its own error says why");
  }
}

}  // namespace

void Group::all_reduce_sum(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  if (!impl_) return;
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  // Buckets of one dtype, in the given order.
  size_t i = 0;
  while (i < tensors.size()) {
    std::vector<torch::Tensor> bucket{tensors[i]};
    int64_t bytes = tensors[i].numel() * static_cast<int64_t>(tensors[i].element_size());
    size_t j = i + 1;
    for (; j < tensors.size() && tensors[j].scalar_type() == tensors[i].scalar_type(); ++j) {
      const int64_t b = tensors[j].numel() * static_cast<int64_t>(tensors[j].element_size());
      if (bytes + b > bucket_bytes) break;
      bucket.push_back(tensors[j]);
      bytes += b;
    }
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : bucket) flat_parts.push_back(t.reshape({-1}));
    std::vector<at::Tensor> flat{torch::cat(flat_parts)};
    wait_for(impl_->pg->allreduce(flat), options_, "all-reduce");
    int64_t offset = 0;
    for (const auto& t : bucket) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
    stats_.all_reduce_calls += 1;
    stats_.all_reduce_bytes += bytes;
    i = j;
  }
  stats_.all_reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<double> Group::all_reduce_values(const std::vector<double>& values) {
  if (!impl_ || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  all_reduce_sum(std::vector<torch::Tensor>{t});
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Group::broadcast(const std::vector<torch::Tensor>& tensors, int64_t root) {
  if (!impl_) return;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{t.contiguous()};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    wait_for(impl_->pg->broadcast(one, bo), options_, "broadcast");
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

torch::Tensor Group::all_gather_rows(const torch::Tensor& t) {
  if (!impl_) return t;
  GSOFT_CHECK(t.dim() >= 1, "all_gather_rows: expected a tensor with rows, got a scalar");
  // Every rank's row count, then rows padded to the largest.
  auto counts = torch::zeros({options_.world_size}, torch::kFloat64);
  counts[options_.rank] = static_cast<double>(t.size(0));
  all_reduce_sum(std::vector<torch::Tensor>{counts});
  const int64_t most = static_cast<int64_t>(counts.max().item<double>());
  auto shape = t.sizes().vec();
  shape[0] = most;
  auto padded = torch::zeros(shape, t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t r = 0; r < options_.world_size; ++r) out[0].push_back(torch::empty(shape, t.options()));
  std::vector<at::Tensor> in{padded};
  wait_for(impl_->pg->allgather(out, in), options_, "all-gather");
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < options_.world_size; ++r)
    parts.push_back(out[0][static_cast<size_t>(r)].narrow(0, 0, static_cast<int64_t>(counts[r].item<double>())));
  return torch::cat(parts);
}

void Group::check_same(const std::string& what, const std::string& value) {
  if (!impl_) return;
  const std::string prefix = "gsoft/check/" + std::to_string(impl_->checks++) + "/";
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  try {
    impl_->store->set(prefix + std::to_string(options_.rank), bytes(value));
    std::vector<std::string> values;
    for (int64_t r = 0; r < options_.world_size; ++r) {
      const auto v = impl_->store->get(prefix + std::to_string(r));  // waits up to the store's timeout
      values.emplace_back(v.begin(), v.end());
    }
    for (int64_t r = 1; r < options_.world_size; ++r)
      GSOFT_CHECK(values[static_cast<size_t>(r)] == values[0], "distributed: rank ", r, " has different ", what,
                  " from rank 0; every rank must run the same command. Rank 0: ", values[0], "; rank ", r, ": ",
                  values[static_cast<size_t>(r)]);
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(options_.rank) + ": comparing " + what +
                             " with the other ranks failed (" + std::string(e.what()).substr(0, 300) + ")");
  }
}

void Group::barrier() {
  if (!impl_) return;
  wait_for(impl_->pg->barrier(), options_, "barrier");
}

torch::Tensor share_weighted(const Group& group, const torch::Tensor& loss, int64_t rows, int64_t total) {
  if (group.world_size() == 1) return loss;
  return loss * (static_cast<double>(rows) / static_cast<double>(total));
}

std::vector<double> finish_backward(Group& group, const std::vector<torch::Tensor>& params,
                                    const std::vector<double>& values) {
  if (group.world_size() == 1) return values;
  // Which gradients exist anywhere and the values travel in one all-reduce, the gradients in a second.
  std::vector<double> sums;
  for (const auto& p : params) sums.push_back(p.grad().defined() ? 1.0 : 0.0);
  sums.insert(sums.end(), values.begin(), values.end());
  sums = group.all_reduce_values(sums);
  std::vector<torch::Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (sums[i] == 0) continue;
    auto p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  group.all_reduce_sum(grads);
  return std::vector<double>(sums.begin() + static_cast<std::ptrdiff_t>(params.size()), sums.end());
}

void check_start(Group& group, int64_t step, const std::string& checkpoint) {
  group.check_same("starting step (each rank reads " + checkpoint + "; put --out on storage that every host can read)",
                   std::to_string(step));
}

bool any_rank(Group& group, bool flag) {
  if (group.world_size() == 1) return flag;
  return group.all_reduce_values({flag ? 1.0 : 0.0})[0] > 0;
}

std::pair<size_t, size_t> shard_range(size_t n, int64_t rank, int64_t world) {
  GSOFT_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_range: rank ", rank, " of world ", world);
  const auto r = static_cast<size_t>(rank), w = static_cast<size_t>(world);
  return {r * n / w, (r + 1) * n / w};
}

}  // namespace gsoft::dist
