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
// dies, otherwise once its heartbeat is silent for DPTRAIN_PEER_TIMEOUT (store/peer_monitor.h).
#pragma once

#include <memory>

#include "dptrain/parallel/communicator.h"
#include "dptrain/parallel/launch_info.h"

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

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend_name() const override { return "store"; }

  WorkPtr allreduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr broadcast_async(torch::Tensor& tensor, int root) override;
  WorkPtr allgather_async(const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                               ReduceOp op = ReduceOp::Sum) override;
  WorkPtr barrier_async() override;
  std::shared_ptr<Communicator> split(int color, int key) override;

  void set_timeout(std::chrono::milliseconds timeout) override;
  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;
  bool checks_calls() const override;

  struct Store;  // the c10d store, kept out of this header

 private:
  StoreCommunicator(std::shared_ptr<Store> store, int rank, int size, int local_rank,
                    std::chrono::milliseconds timeout);
  // The deleter of every StoreCommunicator: leaks a broken one on purpose.
  static void destroy(StoreCommunicator* communicator);
  std::string who() const;
  // Publishes (fingerprint, payload) as this rank's part of collective #id, checks every rank's
  // fingerprint, and returns the payloads of `sources` (ranks), in that order.
  std::vector<std::vector<uint8_t>> exchange(uint64_t id, const std::string& description,
                                             const std::vector<int64_t>& fingerprint, const torch::Tensor& payload,
                                             const std::vector<int>& sources);
  WorkPtr submit(const std::string& description, std::function<void(uint64_t id)> body);

  std::shared_ptr<Store> store_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  uint64_t sequence_ = 0;
  bool is_world_ = false;  // the world's destructor keeps rank 0's store up until every rank is done
  std::shared_ptr<detail::ProgressThread> thread_;
};

}  // namespace dpt
