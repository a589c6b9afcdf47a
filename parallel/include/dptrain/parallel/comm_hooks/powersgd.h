// PowerSGD: gradients compressed to low rank before they cross the network (Vogels et al., 2019,
// "PowerSGD: Practical Low-Rank Gradient Compression"; PyTorch's powerSGD_hook).
//
// Each gradient of a weight matrix M (n x m; a conv kernel is viewed as out x in*k*k) is replaced by
// a rank-r approximation found with one step of power iteration shared by all ranks:
//   P = M Q (n x r), all-reduced; P orthonormalized;  Q = M^T P (m x r), all-reduced;  M ~ P Q^T / W
// so each rank sends (n + m) r numbers instead of n m. What the approximation leaves out is kept
// (error feedback) and added to the next gradient, so nothing is lost, only delayed; Q is kept from
// one step to the next (warm start), so the power iteration keeps converging. Vectors (biases,
// norms' weights) and matrices too small to gain are all-reduced as they are, in one message per
// bucket. The first `start_iteration` steps use the plain all-reduce: early gradients change fast,
// and DDP settles its buckets after the first step.
//
//   auto powersgd = std::make_shared<dpt::PowerSgd>(dpt::PowerSgdOptions().rank(2).start_iteration(100));
//   ddp.register_comm_hook(powersgd->comm_hook());
//
// The collectives of each bucket run in order on a thread of their own (the three of a bucket depend
// on each other), so backward only queues the bucket. The gradients are an approximation: training
// needs the same number of steps or a few more (docs/cluster.md has the accuracy reached and the
// speed on slow links).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>

#include "dptrain/parallel/comm_hooks/comm_hooks.h"

namespace dpt {

class HookThread;

struct PowerSgdOptions {
  // r: the rank of each approximation. 1-4 is typical; larger is closer to the exact gradient and
  // sends more.
  TORCH_ARG(int64_t, rank) = 1;
  // Steps (synchronized backward passes) reduced exactly before compression starts.
  TORCH_ARG(int64_t, start_iteration) = 10;
  // A matrix is compressed only when (n + m) r x this < n m.
  TORCH_ARG(double, min_compression_rate) = 2.0;
  TORCH_ARG(bool, error_feedback) = true;
  TORCH_ARG(bool, warm_start) = true;
  // Seed of the random initial Q: the same on every rank.
  TORCH_ARG(uint64_t, seed) = 0;
};

class PowerSgd : public std::enable_shared_from_this<PowerSgd> {
 public:
  explicit PowerSgd(PowerSgdOptions options = {});
  ~PowerSgd();
  PowerSgd(const PowerSgd&) = delete;
  PowerSgd& operator=(const PowerSgd&) = delete;

  const PowerSgdOptions& options() const { return options_; }
  // For DistributedDataParallel::register_comm_hook; the hook keeps this object alive (hold it in a
  // shared_ptr). One PowerSgd per DDP: it keeps state per bucket.
  CommHook comm_hook();

  // Synchronized backward passes seen so far.
  int64_t iteration() const { return iteration_.load(); }
  // Gradient elements per element sent in the last compressed step (1 before compression starts).
  double compression_ratio() const;

 private:
  struct BucketState;
  BucketFuture compress(GradBucket& bucket);
  BucketState& state_for(const GradBucket& bucket);
  void run(BucketState& state, torch::Tensor buffer, Communicator& comm, double divisor);
  void initialize_q(BucketState& state);

  PowerSgdOptions options_;
  std::atomic<int64_t> iteration_{0};
  std::map<size_t, std::unique_ptr<BucketState>> buckets_;  // by bucket index; touched by the hook's thread only
  torch::Generator generator_;                               // the initial Qs: same draws on every rank
  std::atomic<int64_t> gradient_elements_{0}, sent_elements_{0};
  std::unique_ptr<HookThread> worker_;
};

}  // namespace dpt
