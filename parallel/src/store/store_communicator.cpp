#include "dptrain/parallel/store/store_communicator.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>

#include "comm/fingerprint.h"
#include "liveness/progress_thread.h"
#include "runtime/rendezvous.h"
#include "store/store_check.h"
#include "store/store_watchdog.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"

namespace dpt {

struct StoreCommunicator::Store {
  c10::intrusive_ptr<c10d::Store> store;
  // Where rank 0's TCPStore is (unset for an in-process HashStore): each split opens a connection
  // of its own, so one communicator's blocking read never holds up another's writes.
  std::optional<LaunchInfo> tcp;
  std::string prefix;  // the keys' prefix on the TCPStore ("dptrain/world", then "/split..." per split)
  std::atomic<bool> failed{false};
  // The world's heartbeats, shared with the communicators split from it (declared last: it says
  // goodbye through rank 0's store, so it must go before `store`).
  std::shared_ptr<detail::StoreWatchdog> peers;
};

namespace {

std::string key(const Collective& call, const char* what, int rank) {
  return detail::concat("c", call.sequence, "/", what, rank);
}

std::vector<uint8_t> tensor_bytes(const torch::Tensor& tensor) {
  std::vector<uint8_t> bytes(static_cast<size_t>(tensor.numel()) * tensor.element_size());
  if (!bytes.empty()) std::memcpy(bytes.data(), tensor.data_ptr(), bytes.size());
  return bytes;
}

torch::Tensor bytes_tensor(std::vector<uint8_t>& bytes, c10::ScalarType dtype, int64_t numel) {
  return torch::from_blob(bytes.data(), {numel}, torch::TensorOptions(dtype)).clone();
}

// Exact accumulation type: float64 for floating dtypes (one rounding at the end), int64 for ints.
c10::ScalarType accumulate_type(c10::ScalarType dtype) {
  return c10::isFloatingType(dtype) ? torch::kFloat64 : torch::kInt64;
}

torch::Tensor combine(const torch::Tensor& a, const torch::Tensor& b, ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return a + b;
    case ReduceOp::Product: return a * b;
    case ReduceOp::Min: return torch::minimum(a, b);
    case ReduceOp::Max: return torch::maximum(a, b);
  }
  return a + b;
}

}  // namespace

std::shared_ptr<StoreCommunicator> StoreCommunicator::create_world(const LaunchInfo& launch,
                                                                   std::chrono::milliseconds timeout) {
  auto store = std::make_shared<Store>();
  if (launch.world_size == 1 && (launch.master_addr.empty() || launch.master_port == 0)) {
    store->store = c10::make_intrusive<c10d::HashStore>();
  } else {
    // A dead peer makes libtorch's TCPStore log a multi-line warning with a C++ backtrace before
    // our one-line error; keep c10's own log at errors unless the user chose a level.
    if (!env::get("TORCH_CPP_LOG_LEVEL")) FLAGS_caffe2_log_level = std::max(FLAGS_caffe2_log_level, 2);
    store->store = detail::connect_tcp_store(launch, timeout);
    store->tcp = launch;
    const auto deadline = std::chrono::seconds(env::get_int_or("DPTRAIN_PEER_TIMEOUT", 20));
    DPT_CHECK(deadline.count() > 0, InvalidArgumentError, "DPTRAIN_PEER_TIMEOUT=", deadline.count(),
              " must be > 0 (seconds)");
    store->peers = std::make_shared<detail::StoreWatchdog>(
        c10::make_intrusive<c10d::PrefixStore>("dptrain/peers", detail::connect_tcp_store_client(launch, timeout)),
        launch.rank, launch.world_size, std::chrono::seconds(1), deadline);
  }
  store->prefix = "dptrain/world";
  store->store = c10::make_intrusive<c10d::PrefixStore>(store->prefix, store->store);
  auto world = std::shared_ptr<StoreCommunicator>(
      new StoreCommunicator(std::move(store), {launch.rank, launch.world_size, launch.local_rank}, timeout),
      &StoreCommunicator::destroy);
  world->is_world_ = true;
  return world;
}

StoreCommunicator::StoreCommunicator(std::shared_ptr<Store> store, const Identity& identity,
                                     std::chrono::milliseconds timeout)
    : Communicator("store", identity), store_(std::move(store)) {
  store_->store->setTimeout(timeout);
  thread_ = detail::ProgressThread::create(who(), timeout);
  if (store_->peers) thread_->set_liveness(store_->peers);
}

void StoreCommunicator::destroy(StoreCommunicator* communicator) {
  // A broken communicator's progress thread may still sit in a store read that refers to this
  // object and to the store (rank 0: the server): leave both alone, the process is going down
  // (see Note [Collective timeouts] in liveness/progress_thread.cpp).
  if (communicator->is_broken()) return;
  delete communicator;
}

StoreCommunicator::~StoreCommunicator() {
  const bool healthy = !is_broken();
  const auto limit = std::min<std::chrono::milliseconds>(timeout(), std::chrono::seconds(60));
  thread_.reset();
  if (!is_world_ || !healthy || size() == 1) return;
  // Rank 0 serves the store: it may only go once every rank has finished its last collective
  // (others may still be reading their results from it). Bounded, so a dead peer cannot hold it.
  try {
    auto& store = *store_->store;
    store.add("exit", 1);
    if (rank() != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (store.add("exit", 0) < size() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (...) {
    // The store is already gone (rank 0 died): nothing to wait for.
  }
}

void StoreCommunicator::apply_timeout(std::chrono::milliseconds timeout) {
  thread_->set_timeout(timeout);
  store_->store->setTimeout(timeout);
}

std::chrono::milliseconds StoreCommunicator::timeout() const { return thread_->timeout(); }

bool StoreCommunicator::is_broken() const { return store_->failed || thread_->broken(); }

std::string StoreCommunicator::broken_reason() const {
  return "the store connection failed earlier (a peer died or timed out)";
}

WorkPtr StoreCommunicator::submit(const Collective& call, std::function<void()> body) {
  return thread_->submit(call.description, std::move(body));
}

void StoreCommunicator::release_keys(const Collective& call) {
  auto& store = *store_->store;
  if (store.add(key(call, "done", 0), 1) != size()) return;
  for (int r = 0; r < size(); ++r) {
    if (call.check_across_ranks) store.deleteKey(key(call, "f", r));
    store.deleteKey(key(call, "r", r));
  }
  store.deleteKey(key(call, "done", 0));
}

std::vector<std::vector<uint8_t>> StoreCommunicator::exchange(const Collective& call, const torch::Tensor& payload,
                                                              const std::vector<int>& sources) {
  auto& store = *store_->store;
  try {
    const auto& fingerprint = call.fingerprint;
    if (call.check_across_ranks) {
      std::vector<uint8_t> mine(fingerprint.size() * sizeof(int64_t));
      std::memcpy(mine.data(), fingerprint.data(), mine.size());
      store.set(key(call, "f", rank()), mine);
    }
    if (payload.defined()) store.set(key(call, "r", rank()), tensor_bytes(payload));
    if (call.check_across_ranks) {
      auto reduced = detail::fingerprint_payload(fingerprint);  // running max of (v, -v)
      for (int r = 0; r < size(); ++r) {
        auto bytes = store.get(key(call, "f", r));
        std::vector<int64_t> theirs(fingerprint.size());
        std::memcpy(theirs.data(), bytes.data(), std::min(bytes.size(), theirs.size() * sizeof(int64_t)));
        auto as_payload = detail::fingerprint_payload(theirs);
        for (size_t i = 0; i < reduced.size(); ++i) reduced[i] = std::max(reduced[i], as_payload[i]);
      }
      try {
        detail::check_fingerprint(reduced, who(), call.description);
      } catch (...) {
        release_keys(call);
        throw;
      }
    }
    std::vector<std::vector<uint8_t>> result;
    result.reserve(sources.size());
    for (int r : sources) result.push_back(store.get(key(call, "r", r)));
    release_keys(call);
    return result;
  } catch (const dpt::Error&) {
    throw;
  } catch (const std::exception& e) {
    store_->failed = true;
    detail::rethrow_store_failure(e, who(), call.description, timeout());
  }
}

std::vector<std::vector<uint8_t>> StoreCommunicator::exchange_with_all(const Collective& call,
                                                                       const torch::Tensor& payload) {
  std::vector<int> all(static_cast<size_t>(size()));
  for (int r = 0; r < size(); ++r) all[static_cast<size_t>(r)] = r;
  return exchange(call, payload, all);
}

WorkPtr StoreCommunicator::run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) {
  return submit(call, [this, call, tensor, op]() mutable {
    auto parts = exchange_with_all(call, tensor);
    const auto dtype = tensor.scalar_type();
    torch::Tensor acc;
    for (auto& part : parts) {
      auto x = bytes_tensor(part, dtype, tensor.numel()).to(accumulate_type(dtype));
      acc = acc.defined() ? combine(acc, x, op) : x;
    }
    if (op == ReduceOp::Avg) acc = acc / size();
    tensor.view(-1).copy_(acc);
  });
}

WorkPtr StoreCommunicator::run_broadcast(const Collective& call, torch::Tensor& tensor, int root) {
  return submit(call, [this, call, tensor, root]() mutable {
    auto parts = exchange(call, rank() == root ? tensor : torch::Tensor(), {root});
    if (rank() != root) tensor.view(-1).copy_(bytes_tensor(parts[0], tensor.scalar_type(), tensor.numel()));
  });
}

WorkPtr StoreCommunicator::run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) {
  return submit(call, [this, call, input, output]() mutable {
    auto parts = exchange_with_all(call, input);
    auto flat = output.view(-1);
    for (int r = 0; r < size(); ++r) {
      flat.narrow(0, r * input.numel(), input.numel())
          .copy_(bytes_tensor(parts[static_cast<size_t>(r)], input.scalar_type(), input.numel()));
    }
  });
}

WorkPtr StoreCommunicator::run_reduce_scatter(const Collective& call, const torch::Tensor& input,
                                              torch::Tensor& output, ReduceOp op) {
  return submit(call, [this, call, input, output, op]() mutable {
    auto parts = exchange_with_all(call, input);
    const auto dtype = input.scalar_type();
    torch::Tensor acc;
    for (auto& part : parts) {
      auto x = bytes_tensor(part, dtype, input.numel()).narrow(0, rank() * output.numel(), output.numel())
                   .to(accumulate_type(dtype));
      acc = acc.defined() ? combine(acc, x, op) : x;
    }
    if (op == ReduceOp::Avg) acc = acc / size();
    output.view(-1).copy_(acc);
  });
}

WorkPtr StoreCommunicator::run_barrier(const Collective& call) {
  return submit(call, [this, call] { exchange_with_all(call, torch::empty({0}, torch::kUInt8)); });
}

std::shared_ptr<Communicator> StoreCommunicator::run_split(const Collective& call, int color, int key) {
  auto mine = torch::tensor({static_cast<int64_t>(color), static_cast<int64_t>(key)}, torch::kInt64);
  auto table = torch::empty({2 * size()}, torch::kInt64);
  allgather_async(mine, table)->wait();
  if (color < 0) return nullptr;
  std::vector<std::pair<int64_t, int>> members;  // (key, world rank), as MPI_Comm_split orders
  for (int r = 0; r < size(); ++r) {
    if (table[2 * r].item<int64_t>() == color) members.emplace_back(table[2 * r + 1].item<int64_t>(), r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank()) new_rank = static_cast<int>(i);
  }
  auto store = std::make_shared<Store>();
  // Its own connection to rank 0's store (see Store::tcp), under the same key prefixes.
  c10::intrusive_ptr<c10d::Store> base = store_->store;
  if (store_->tcp) {
    base = c10::make_intrusive<c10d::PrefixStore>(store_->prefix,
                                                  detail::connect_tcp_store_client(*store_->tcp, timeout()));
  }
  const std::string name = detail::concat("split", call.sequence, "/color", color);
  store->tcp = store_->tcp;
  store->prefix = store_->prefix + "/" + name;
  store->store = c10::make_intrusive<c10d::PrefixStore>(name, base);
  store->peers = store_->peers;
  return std::shared_ptr<StoreCommunicator>(
      new StoreCommunicator(std::move(store), {new_rank, static_cast<int>(members.size()), local_rank()}, timeout()),
      &StoreCommunicator::destroy);
}

}  // namespace dpt
