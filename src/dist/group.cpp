#include "gsoft/dist/group.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <thread>

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
  GSOFT_CHECK(bucket_bytes > 0, "distributed: the bucket size must be positive, got ", bucket_bytes, " bytes");
}

struct Group::Impl {
  explicit Impl(const DistOptions& o) : options(o) {}
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  int64_t checks = 0;  // makes each check_same's store keys unique
  // Every rank's host name and process id, exchanged at start-up, so that a rank whose collective
  // fails can say which of the others on its host is gone.
  std::vector<std::pair<std::string, int64_t>> peers;
  std::string host;
  const DistOptions& options;  // the Group's (a Group is neither copied nor moved)

  std::string lost_ranks() const;
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const;
};

Group::Group(const DistOptions& options) : options_(options) {
  options_.validate();
  if (options_.world_size == 1) return;
  impl_ = std::make_unique<Impl>(options_);
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
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  impl_->host = host;
  const std::string me = impl_->host + "\n" + std::to_string(::getpid());
  try {
    impl_->store->set("gsoft/peer/" + std::to_string(options_.rank), std::vector<uint8_t>(me.begin(), me.end()));
    for (int64_t r = 0; r < options_.world_size; ++r) {
      const auto v = impl_->store->get("gsoft/peer/" + std::to_string(r));
      const std::string text(v.begin(), v.end());
      const size_t nl = text.find('\n');
      impl_->peers.emplace_back(text.substr(0, nl), nl == std::string::npos ? -1 : std::stoll(text.substr(nl + 1)));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": exchanging process ids through the store at " + where + " failed (" +
                             std::string(e.what()).substr(0, 300) + ")");
  }
}

Group::~Group() = default;

namespace {

// Whether process `pid` of this host still runs (a zombie does not).
bool is_running(int64_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');  // the state follows the parenthesised command name
  return close == std::string::npos || close + 2 >= line.size() || (line[close + 2] != 'Z' && line[close + 2] != 'X');
}

}  // namespace

// Which ranks this rank can tell are gone: those on its host whose process ended.
std::string Group::Impl::lost_ranks() const {
  // A killed peer's sockets close while it exits, so its process may outlive the error by a moment.
  std::string named;
  for (int tries = 0; tries < 40 && named.empty(); ++tries) {
    if (tries > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (size_t r = 0; r < peers.size(); ++r) {
      if (static_cast<int64_t>(r) == options.rank) continue;
      const auto& [peer_host, pid] = peers[r];
      if (peer_host == host && !is_running(pid))
        named += (named.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " (pid " + std::to_string(pid) + ")";
    }
  }
  if (!named.empty()) return named + (named.find(',') == std::string::npos ? " is" : " are") + " no longer running";
  const std::string within = " within " + std::to_string(options.timeout.count() / 1000) + " s";
  if (options.world_size == 2)
    return "the other rank, " + std::to_string(1 - options.rank) + ", stopped or did not answer" + within;
  return "another rank stopped or did not answer" + within;
}

// Runs a collective; a failure (a rank that died, a timeout) becomes one clear error.
void Group::Impl::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
  try {
    work->wait(options.timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(options.rank) + ": " + what + " across " +
                             std::to_string(options.world_size) + " ranks failed: " + lost_ranks() + "; its own output says why (Gloo: " +
                             std::string(e.what()).substr(0, 300) + ")");
  }
}

void Group::all_reduce_sum(const torch::Tensor& t) {
  if (!impl_) return;
  GSOFT_CHECK(t.is_contiguous(), "all_reduce_sum: expected a contiguous tensor");
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> one(1, t);
  impl_->wait(impl_->pg->allreduce(one), "all-reduce");
  stats_.all_reduce_calls += 1;
  stats_.all_reduce_bytes += t.numel() * static_cast<int64_t>(t.element_size());
  stats_.all_reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<double> Group::all_reduce_values(const std::vector<double>& values) {
  if (!impl_ || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  all_reduce_sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Group::broadcast(const std::vector<torch::Tensor>& tensors, int64_t root) {
  if (!impl_) return;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{t.contiguous()};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->wait(impl_->pg->broadcast(one, bo), "broadcast");
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

torch::Tensor Group::all_gather_rows(const torch::Tensor& t) {
  if (!impl_) return t;
  GSOFT_CHECK(t.dim() >= 1, "all_gather_rows: expected a tensor with rows, got a scalar");
  // Every rank's row count, then rows padded to the largest.
  auto counts = torch::zeros({options_.world_size}, torch::kFloat64);
  counts[options_.rank] = static_cast<double>(t.size(0));
  all_reduce_sum(counts);
  const int64_t most = static_cast<int64_t>(counts.max().item<double>());
  auto shape = t.sizes().vec();
  shape[0] = most;
  auto padded = torch::zeros(shape, t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t r = 0; r < options_.world_size; ++r) out[0].push_back(torch::empty(shape, t.options()));
  std::vector<at::Tensor> in{padded};
  impl_->wait(impl_->pg->allgather(out, in), "all-gather");
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
  impl_->wait(impl_->pg->barrier(), "barrier");
}

torch::Tensor share_weighted(const Group& group, const torch::Tensor& loss, int64_t rows, int64_t total) {
  if (group.world_size() == 1) return loss;
  return loss * (static_cast<double>(rows) / static_cast<double>(total));
}

struct GradReducer::State {
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0, numel = 0, flag = 0;  // flag: its element in the bucket, after the data
    bool arrived = false;
  };
  struct Bucket {
    std::vector<size_t> members;
    int64_t numel = 0;  // data elements; one flag per member follows
    torch::TensorOptions options;
    torch::Tensor flat;  // this step's buffer
    int64_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<torch::Tensor> params;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<std::pair<size_t, unsigned>> hooks;
  size_t next = 0;     // the next bucket to start
  bool armed = false;  // this step's buffers exist
  bool first_step = true;
  int64_t bucket_bytes = 0;

  // Buckets of the tensors in `order`, a new one at position `split` (and at a change of dtype
  // or a full bucket).
  void layout(const std::vector<size_t>& order, size_t split) {
    buckets.clear();
    slots.assign(params.size(), Slot{});
    for (size_t i = 0; i < order.size(); ++i) {
      const size_t k = order[i];
      const torch::Tensor& p = params[k];
      const auto size = static_cast<int64_t>(p.element_size());
      const bool fits = !buckets.empty() && i != split && buckets.back().options.dtype() == p.dtype() &&
                        (buckets.back().numel + p.numel()) * size <= bucket_bytes;
      if (!fits) {
        buckets.emplace_back();
        buckets.back().options = torch::TensorOptions().dtype(p.dtype());
      }
      Bucket& b = buckets.back();
      slots[k].bucket = buckets.size() - 1;
      slots[k].offset = b.numel;
      slots[k].numel = p.numel();
      b.numel += p.numel();
      b.members.push_back(k);
    }
    for (auto& b : buckets)
      for (size_t j = 0; j < b.members.size(); ++j) slots[b.members[j]].flag = b.numel + static_cast<int64_t>(j);
  }

  // This step's buffers, allocated by the first gradient (or by finish on a rank with none).
  void arm() {
    for (auto& b : buckets) {
      b.flat = torch::empty({b.numel + static_cast<int64_t>(b.members.size())}, b.options);
      b.pending = static_cast<int64_t>(b.members.size());
      b.work.reset();
    }
    for (auto& slot : slots) slot.arrived = false;
    next = 0;
    armed = true;
  }
};

GradReducer::GradReducer(Group& group, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : group_(group), state_(std::make_unique<State>()) {
  if (group_.world_size() == 1) return;
  if (bucket_bytes == 0) bucket_bytes = group_.options().bucket_bytes;
  GSOFT_CHECK(bucket_bytes > 0, "GradReducer: bucket_bytes must be positive, got ", bucket_bytes);
  State& st = *state_;
  st.params = std::move(params);
  st.bucket_bytes = bucket_bytes;
  std::vector<size_t> order(st.params.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = order.size() - 1 - k;
  st.layout(order, order.size());
  for (size_t k = 0; k < st.params.size(); ++k) {
    if (!st.params[k].requires_grad()) continue;
    st.hooks.emplace_back(k, st.params[k].register_hook([this, k](const torch::Tensor& g) { arrived(k, g); }));
  }
}

GradReducer::~GradReducer() {
  for (const auto& [k, h] : state_->hooks) state_->params[k].remove_hook(h);
}

int64_t GradReducer::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }

void GradReducer::arrived(size_t k, const torch::Tensor& g) {
  State& s = *state_;
  if (!s.armed) s.arm();
  State::Slot& slot = s.slots[k];
  GSOFT_CHECK(!slot.arrived, "GradReducer: the gradient of tensor ", k,
              " arrived twice in one step; data-parallel training runs one backward per step");
  torch::NoGradGuard no_grad;
  State::Bucket& b = s.buckets[slot.bucket];
  b.flat.narrow(0, slot.offset, slot.numel).copy_(g.reshape({-1}));
  b.flat[slot.flag] = 1;
  slot.arrived = true;
  --b.pending;
  while (s.next < s.buckets.size() && s.buckets[s.next].pending == 0) start(s.next++);
}

void GradReducer::start(size_t k) {
  State& s = *state_;
  State::Bucket& b = s.buckets[k];
  for (size_t m : b.members) {  // a gradient that never came counts as zero, flagged absent
    const State::Slot& slot = s.slots[m];
    if (slot.arrived) continue;
    b.flat.narrow(0, slot.offset, slot.numel).zero_();
    b.flat[slot.flag] = 0;
  }
  std::vector<at::Tensor> one{b.flat};
  b.work = group_.impl_->pg->allreduce(one);
  group_.stats_.all_reduce_calls += 1;
  group_.stats_.all_reduce_bytes += b.flat.numel() * static_cast<int64_t>(b.flat.element_size());
}

std::vector<double> GradReducer::finish(const std::vector<double>& values) {
  if (group_.world_size() == 1) return values;
  const auto t0 = std::chrono::steady_clock::now();
  State& s = *state_;
  torch::NoGradGuard no_grad;
  if (!s.armed) s.arm();
  while (s.next < s.buckets.size()) start(s.next++);
  // The values go last, so every rank issues the collectives in the same order.
  auto sums = torch::tensor(values.empty() ? std::vector<double>{0.0} : values, torch::kFloat64);
  std::vector<at::Tensor> one{sums};
  const auto values_work = group_.impl_->pg->allreduce(one);
  for (auto& b : s.buckets) {
    group_.impl_->wait(b.work, "gradient all-reduce");
    for (size_t m : b.members) {
      const State::Slot& slot = s.slots[m];
      torch::Tensor& p = s.params[m];
      // The summed gradient as a view of its bucket: no copy back.
      if (b.flat[slot.flag].item<double>() > 0)
        p.mutable_grad() = b.flat.narrow(0, slot.offset, slot.numel).view_as(p);
      else
        p.mutable_grad() = torch::Tensor();
    }
  }
  group_.impl_->wait(values_work, "all-reduce");
  s.armed = false;
  if (s.first_step) {
    // A tensor that no rank gave a gradient (a part of the model the loss does not use) would hold
    // its bucket, and every later one, back until finish: after the first step such tensors get
    // buckets of their own at the end. Every rank sees the same sums, so all agree on the layout.
    s.first_step = false;
    std::vector<size_t> used, unused;
    for (const auto& b : s.buckets)
      for (size_t m : b.members) (s.params[m].grad().defined() ? used : unused).push_back(m);
    if (!unused.empty() && !used.empty()) {
      const size_t split = used.size();
      used.insert(used.end(), unused.begin(), unused.end());
      s.layout(used, split);
    }
  }
  group_.stats_.all_reduce_calls += 1;
  group_.stats_.all_reduce_bytes += sums.numel() * 8;
  // The time this rank waited for the exchange after its backward: what the overlap left exposed.
  group_.stats_.all_reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (values.empty()) return values;
  return std::vector<double>(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
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
