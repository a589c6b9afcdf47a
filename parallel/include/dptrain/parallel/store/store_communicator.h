// Communicator over libtorch's c10d key-value store (TCPStore served by rank 0): CPU tensors,
// for torchrun-style launches on machines without MPI:
//   RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 prog &
//   RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 prog
//
// Why not gloo: the torch wheel ships ProcessGroupGloo.hpp without the gloo headers it includes,
// so it cannot be compiled against. This backend is the fallback that works everywhere: each
// rank publishes its tensor under a per-collective key and reads the others' (every byte passes
// through rank 0's store, so it is meant for correctness, small jobs and CPU CI - use MPI or NCCL
// for speed). Results are identical on every rank: all reduce the same bytes in rank order, in
// float64 (int64 for integers), and round once.
//
// Same contracts as the other backends: issue-order progress thread, every rank's fingerprint is
// compared (a disagreement is the same CommunicationError everywhere), AVG on floating dtypes
// only. A peer that dies makes the others' collectives fail: at once when rank 0 (the store)
// dies, otherwise once its heartbeat is silent for DPTRAIN_PEER_TIMEOUT (store/store_watchdog.h).
#pragma once

#include <memory>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt {

namespace detail {
class ProgressThread;
}

class StoreCommunicator final : public Communicator {
 public:
  // Collective over the launch's ranks (TCP rendezvous at MASTER_ADDR:MASTER_PORT; alone: an
  // in-process store).
  static std::shared_ptr<StoreCommunicator> create_world(const LaunchInfo& launch, std::chrono::milliseconds timeout);
  ~StoreCommunicator() override;

  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;

  struct Store;  // the c10d store, kept out of this header

 protected:
  WorkPtr run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) override;
  WorkPtr run_broadcast(const Collective& call, torch::Tensor& tensor, int root) override;
  WorkPtr run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr run_reduce_scatter(const Collective& call, const torch::Tensor& input, torch::Tensor& output,
                             ReduceOp op) override;
  WorkPtr run_barrier(const Collective& call) override;
  std::shared_ptr<Communicator> run_split(const Collective& call, int color, int key) override;
  void apply_timeout(std::chrono::milliseconds timeout) override;
  std::string broken_reason() const override;

 private:
  StoreCommunicator(std::shared_ptr<Store> store, const Identity& identity, std::chrono::milliseconds timeout);
  // The deleter of every StoreCommunicator: leaks a broken one on purpose.
  static void destroy(StoreCommunicator* communicator);
  // Publishes (fingerprint, payload) as this rank's part of `call`, checks every rank's
  // fingerprint when the call asks for it, and returns the payloads of `sources` (ranks), in
  // that order. Runs on the progress thread.
  std::vector<std::vector<uint8_t>> exchange(const Collective& call, const torch::Tensor& payload,
                                             const std::vector<int>& sources);
  // The payloads of every rank, by rank.
  std::vector<std::vector<uint8_t>> exchange_with_all(const Collective& call, const torch::Tensor& payload);
  // Removes the keys of `call` once every rank has read them (the last reader does).
  void release_keys(const Collective& call);
  WorkPtr submit(const Collective& call, std::function<void()> body);

  std::shared_ptr<Store> store_;
  bool is_world_ = false;  // the world's destructor keeps rank 0's store up until every rank is done
  std::shared_ptr<detail::ProgressThread> thread_;
};

}  // namespace dpt
