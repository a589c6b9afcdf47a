#include "dptrain/parallel/store_communicator.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <optional>
#include <thread>

#include "../fingerprint.h"
#include "../progress_thread.h"
#include "../tcp_store.h"
#include "../tensor_checks.h"
#include "peer_monitor.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"

namespace dpt {

using detail::CollectiveKind;
using detail::describe;

struct StoreCommunicator::Store {
  c10::intrusive_ptr<c10d::Store> store;
  // Where rank 0's TCPStore is (unset for an in-process HashStore): each split opens a connection
  // of its own, so one communicator's blocking read never holds up another's writes.
  std::optional<LaunchInfo> tcp;
  std::string prefix;  // the keys' prefix on the TCPStore ("dptrain/world", then "/split..." per split)
  bool check_collectives = true;
  std::atomic<bool> failed{false};
  // The world's heartbeats, shared with the communicators split from it (declared last: it says
  // goodbye through rank 0's store, so it must go before `store`).
  std::shared_ptr<detail::PeerMonitor> peers;
};

namespace {

std::string key(uint64_t id, const char* what, int rank) { return detail::concat("c", id, "/", what, rank); }

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
    store->peers = std::make_shared<detail::PeerMonitor>(
        c10::make_intrusive<c10d::PrefixStore>("dptrain/peers", detail::connect_tcp_store_client(launch, timeout)),
        launch.rank, launch.world_size, std::chrono::seconds(1), deadline);
  }
  store->prefix = "dptrain/world";
  store->store = c10::make_intrusive<c10d::PrefixStore>(store->prefix, store->store);
  store->check_collectives = detail::call_check_enabled();
  auto world = std::shared_ptr<StoreCommunicator>(
      new StoreCommunicator(std::move(store), launch.rank, launch.world_size, launch.local_rank, timeout),
      &StoreCommunicator::destroy);
  world->is_world_ = true;
  return world;
}

StoreCommunicator::StoreCommunicator(std::shared_ptr<Store> store, int rank, int size, int local_rank,
                                     std::chrono::milliseconds timeout)
    : store_(std::move(store)), rank_(rank), size_(size), local_rank_(local_rank) {
  store_->store->setTimeout(timeout);
  thread_ = detail::ProgressThread::create(who(), timeout);
  if (store_->peers) thread_->set_peer_check([peers = store_->peers] { return peers->dead_peer(); });
}

void StoreCommunicator::destroy(StoreCommunicator* communicator) {
  // A broken communicator's progress thread may still sit in a store read that refers to this
  // object and to the store (rank 0: the server): leave both alone, the process is going down
  // (see Note [Collective timeouts] in progress_thread.cpp).
  if (communicator->is_broken()) return;
  delete communicator;
}

StoreCommunicator::~StoreCommunicator() {
  const bool healthy = !is_broken();
  const auto limit = std::min<std::chrono::milliseconds>(timeout(), std::chrono::seconds(60));
  thread_.reset();
  if (!is_world_ || !healthy || size_ == 1) return;
  // Rank 0 serves the store: it may only go once every rank has finished its last collective
  // (others may still be reading their results from it). Bounded, so a dead peer cannot hold it.
  try {
    auto& store = *store_->store;
    store.add("exit", 1);
    if (rank_ != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (store.add("exit", 0) < size_ && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (...) {
    // The store is already gone (rank 0 died): nothing to wait for.
  }
}

std::string StoreCommunicator::who() const { return detail::concat("store rank ", rank_, "/", size_); }

void StoreCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  DPT_CHECK(timeout.count() > 0, InvalidArgumentError, who(), ": timeout must be > 0 ms, got ", timeout.count());
  thread_->set_timeout(timeout);
  store_->store->setTimeout(timeout);
}

std::chrono::milliseconds StoreCommunicator::timeout() const { return thread_->timeout(); }

bool StoreCommunicator::is_broken() const { return store_->failed || thread_->broken(); }

WorkPtr StoreCommunicator::submit(const std::string& description, std::function<void(uint64_t id)> body) {
  DPT_CHECK(!store_->failed, CommunicationError, who(), ": cannot run ", description,
            ": the store connection failed earlier (a peer died or timed out)");
  const uint64_t id = sequence_;
  return thread_->submit(description, [id, body = std::move(body)] { body(id); });
}

std::vector<std::vector<uint8_t>> StoreCommunicator::exchange(uint64_t id, const std::string& description,
                                                              const std::vector<int64_t>& fingerprint,
                                                              const torch::Tensor& payload,
                                                              const std::vector<int>& sources) {
  auto& store = *store_->store;
  try {
    if (store_->check_collectives) {
      std::vector<uint8_t> mine(fingerprint.size() * sizeof(int64_t));
      std::memcpy(mine.data(), fingerprint.data(), mine.size());
      store.set(key(id, "f", rank_), mine);
    }
    if (payload.defined()) store.set(key(id, "r", rank_), tensor_bytes(payload));
    if (store_->check_collectives) {
      auto reduced = detail::fingerprint_payload(fingerprint);  // running max of (v, -v)
      for (int r = 0; r < size_; ++r) {
        auto bytes = store.get(key(id, "f", r));
        std::vector<int64_t> theirs(fingerprint.size());
        std::memcpy(theirs.data(), bytes.data(), std::min(bytes.size(), theirs.size() * sizeof(int64_t)));
        auto as_payload = detail::fingerprint_payload(theirs);
        for (size_t i = 0; i < reduced.size(); ++i) reduced[i] = std::max(reduced[i], as_payload[i]);
      }
      try {
        detail::check_fingerprint(reduced, who(), description);
      } catch (...) {
        if (store.add(key(id, "done", 0), 1) == size_) {
          for (int r = 0; r < size_; ++r) {
            store.deleteKey(key(id, "f", r));
            store.deleteKey(key(id, "r", r));
          }
          store.deleteKey(key(id, "done", 0));
        }
        throw;
      }
    }
    std::vector<std::vector<uint8_t>> result;
    result.reserve(sources.size());
    for (int r : sources) result.push_back(store.get(key(id, "r", r)));
    // The last rank to finish reading removes the collective's keys.
    if (store.add(key(id, "done", 0), 1) == size_) {
      for (int r = 0; r < size_; ++r) {
        if (store_->check_collectives) store.deleteKey(key(id, "f", r));
        store.deleteKey(key(id, "r", r));
      }
      store.deleteKey(key(id, "done", 0));
    }
    return result;
  } catch (const dpt::Error&) {
    throw;
  } catch (const std::exception& e) {
    store_->failed = true;
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    std::string lower = message;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos) {
      DPT_THROW(TimeoutError, who(), ": ", description, " did not complete within ",
                std::chrono::duration<double>(timeout()).count(), " s (a peer rank died or hangs): ", message);
    }
    DPT_THROW(CommunicationError, who(), ": ", description, " failed (a peer rank died?): ", message);
  }
}

WorkPtr StoreCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::string what = detail::concat("allreduce(", to_string(op), ")");
  detail::check_tensor(tensor, who(), what + ": tensor", *this);
  detail::check_reduce_op(op, tensor.scalar_type(), who(), what);
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(tensor));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Allreduce, static_cast<int64_t>(tensor.scalar_type()),
                                              tensor.numel(), static_cast<int64_t>(op));
  return submit(description, [this, tensor, op, description, fingerprint](uint64_t id) mutable {
    std::vector<int> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) all[static_cast<size_t>(r)] = r;
    auto parts = exchange(id, description, fingerprint, tensor, all);
    const auto dtype = tensor.scalar_type();
    torch::Tensor acc;
    for (auto& part : parts) {
      auto x = bytes_tensor(part, dtype, tensor.numel()).to(accumulate_type(dtype));
      acc = acc.defined() ? combine(acc, x, op) : x;
    }
    if (op == ReduceOp::Avg) acc = acc / size_;
    tensor.view(-1).copy_(acc);
  });
}

WorkPtr StoreCommunicator::broadcast_async(torch::Tensor& tensor, int root) {
  detail::check_tensor(tensor, who(), "broadcast: tensor", *this);
  DPT_CHECK(root >= 0 && root < size_, InvalidArgumentError, who(), ": broadcast: root ", root, " is not in [0, ",
            size_, ")");
  std::string description = detail::concat("broadcast from rank ", root, " #", ++sequence_, " of ", describe(tensor));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Broadcast, static_cast<int64_t>(tensor.scalar_type()),
                                              tensor.numel(), -1, root);
  return submit(description, [this, tensor, root, description, fingerprint](uint64_t id) mutable {
    auto parts = exchange(id, description, fingerprint, rank_ == root ? tensor : torch::Tensor(), {root});
    if (rank_ != root) tensor.view(-1).copy_(bytes_tensor(parts[0], tensor.scalar_type(), tensor.numel()));
  });
}

WorkPtr StoreCommunicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  detail::check_tensor(input, who(), "allgather: input", *this);
  detail::check_tensor(output, who(), "allgather: output", *this);
  detail::check_same_kind(input, output, who(), "allgather");
  DPT_CHECK(output.numel() == input.numel() * size_, InvalidArgumentError, who(), ": allgather: output has ",
            output.numel(), " elements but needs world size ", size_, " x input's ", input.numel());
  std::string description = detail::concat("allgather #", ++sequence_, " of ", describe(input));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Allgather, static_cast<int64_t>(input.scalar_type()),
                                              input.numel());
  return submit(description, [this, input, output, description, fingerprint](uint64_t id) mutable {
    std::vector<int> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) all[static_cast<size_t>(r)] = r;
    auto parts = exchange(id, description, fingerprint, input, all);
    auto flat = output.view(-1);
    for (int r = 0; r < size_; ++r) {
      flat.narrow(0, r * input.numel(), input.numel())
          .copy_(bytes_tensor(parts[static_cast<size_t>(r)], input.scalar_type(), input.numel()));
    }
  });
}

WorkPtr StoreCommunicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) {
  std::string what = detail::concat("reduce_scatter(", to_string(op), ")");
  detail::check_tensor(input, who(), what + ": input", *this);
  detail::check_tensor(output, who(), what + ": output", *this);
  detail::check_same_kind(input, output, who(), what);
  detail::check_reduce_op(op, input.scalar_type(), who(), what);
  DPT_CHECK(input.numel() == output.numel() * size_, InvalidArgumentError, who(), ": ", what, ": input has ",
            input.numel(), " elements but needs world size ", size_, " x output's ", output.numel());
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(input));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::ReduceScatter, static_cast<int64_t>(input.scalar_type()),
                                              input.numel(), static_cast<int64_t>(op));
  return submit(description, [this, input, output, op, description, fingerprint](uint64_t id) mutable {
    std::vector<int> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) all[static_cast<size_t>(r)] = r;
    auto parts = exchange(id, description, fingerprint, input, all);
    const auto dtype = input.scalar_type();
    torch::Tensor acc;
    for (auto& part : parts) {
      auto x = bytes_tensor(part, dtype, input.numel()).narrow(0, rank_ * output.numel(), output.numel())
                   .to(accumulate_type(dtype));
      acc = acc.defined() ? combine(acc, x, op) : x;
    }
    if (op == ReduceOp::Avg) acc = acc / size_;
    output.view(-1).copy_(acc);
  });
}

WorkPtr StoreCommunicator::barrier_async() {
  std::string description = detail::concat("barrier #", ++sequence_);
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Barrier);
  return submit(description, [this, description, fingerprint](uint64_t id) {
    std::vector<int> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) all[static_cast<size_t>(r)] = r;
    exchange(id, description, fingerprint, torch::empty({0}, torch::kUInt8), all);
  });
}

std::shared_ptr<Communicator> StoreCommunicator::split(int color, int key) {
  std::string description = detail::concat("split(color ", color, ", key ", key, ") #", ++sequence_);
  auto mine = torch::tensor({static_cast<int64_t>(color), static_cast<int64_t>(key)}, torch::kInt64);
  auto table = torch::empty({2 * size_}, torch::kInt64);
  allgather_async(mine, table)->wait();
  if (color < 0) return nullptr;
  std::vector<std::pair<int64_t, int>> members;  // (key, world rank), as MPI_Comm_split orders
  for (int r = 0; r < size_; ++r) {
    if (table[2 * r].item<int64_t>() == color) members.emplace_back(table[2 * r + 1].item<int64_t>(), r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) new_rank = static_cast<int>(i);
  }
  auto store = std::make_shared<Store>();
  // Its own connection to rank 0's store (see Store::tcp), under the same key prefixes.
  c10::intrusive_ptr<c10d::Store> base = store_->store;
  if (store_->tcp) {
    base = c10::make_intrusive<c10d::PrefixStore>(store_->prefix,
                                                  detail::connect_tcp_store_client(*store_->tcp, timeout()));
  }
  store->tcp = store_->tcp;
  store->prefix = store_->prefix + "/" + detail::concat("split", sequence_, "/color", color);
  store->store = c10::make_intrusive<c10d::PrefixStore>(detail::concat("split", sequence_, "/color", color), base);
  store->check_collectives = detail::call_check_enabled();
  store->peers = store_->peers;
  return std::shared_ptr<StoreCommunicator>(new StoreCommunicator(
      std::move(store), new_rank, static_cast<int>(members.size()), local_rank_, timeout()), &StoreCommunicator::destroy);
}

bool StoreCommunicator::checks_calls() const { return store_->check_collectives; }

}  // namespace dpt
