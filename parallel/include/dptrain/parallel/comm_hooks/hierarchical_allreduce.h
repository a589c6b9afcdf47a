// A host-aware all-reduce for jobs that span machines, where the link between hosts is slower than
// the memory inside one (docs/cluster.md).
//
// With L ranks on each of H hosts, a flat ring all-reduce sends 2(W-1)/W of the buffer over every
// rank's link, most of it between hosts. Here instead:
//   1. the ranks of a host reduce-scatter the buffer among themselves (shared memory): each holds
//      the host's sum of 1/L of it;
//   2. the ranks with the same local index, one per host, all-reduce their piece: L cross-host
//      all-reduces in parallel, each of 1/L of the buffer;
//   3. the ranks of a host all-gather the pieces.
// Cross-host traffic per rank: 2(H-1)/H x N/L bytes. The three stages of each call run in order on
// one worker thread (FIFO, so every rank issues the same collectives in the same order), so a
// caller - DDP's comm hook during backward - only queues the call and waits for it later.
//
//   auto hierarchical = std::make_shared<dpt::HierarchicalAllreduce>(world);   // collective, a shared_ptr
//   if (hierarchical->helps()) ddp.register_comm_hook(hierarchical->comm_hook());
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>

#include "dptrain/parallel/comm_hooks/comm_hooks.h"
#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

class HookThread;

// Which host each rank runs on, from the ranks' hostnames (hosts numbered by their lowest rank).
struct HostLayout {
  int host = 0;         // this rank's host
  int hosts = 1;
  int local_rank = 0;   // index among its host's ranks, by world rank
  int local_size = 1;   // ranks on this rank's host
  bool uniform = true;  // every host runs the same number of ranks
  // Every host's ranks are consecutive world ranks (mpirun's default placement): a flat ring then
  // crosses each host's link only about once per direction, and the hierarchical all-reduce has
  // little to gain; with round-robin placement (SLURM's cyclic) every ring edge crosses.
  bool contiguous = true;
};
// Collective: all-gathers the hostnames. `ranks_per_host` (tests, or a launcher that knows better)
// takes consecutive world ranks as one host instead.
HostLayout discover_host_layout(Communicator& world, std::optional<int> ranks_per_host = std::nullopt);

class HierarchicalAllreduce : public std::enable_shared_from_this<HierarchicalAllreduce> {
 public:
  // Collective: discovers the layout and splits `world` into this host's ranks and the ranks of
  // this local index on every host.
  explicit HierarchicalAllreduce(CommunicatorPtr world, std::optional<int> ranks_per_host = std::nullopt);
  ~HierarchicalAllreduce();
  HierarchicalAllreduce(const HierarchicalAllreduce&) = delete;
  HierarchicalAllreduce& operator=(const HierarchicalAllreduce&) = delete;

  const HostLayout& layout() const { return layout_; }
  // Whether it differs from the flat all-reduce: several hosts, several ranks on each, the same on
  // all (otherwise allreduce_async is the world's own).
  bool helps() const { return layout_.hosts > 1 && layout_.local_size > 1 && layout_.uniform; }

  // Sum or Avg of a contiguous tensor in place, on every rank.
  WorkPtr allreduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::Sum);
  // For DistributedDataParallel::register_comm_hook: each bucket summed hierarchically, then divided
  // by the bucket's divisor. The hook keeps this object alive (it must be held by a shared_ptr).
  CommHook comm_hook();

 private:
  void run_stages(torch::Tensor& tensor, ReduceOp op);

  CommunicatorPtr world_;
  HostLayout layout_;
  CommunicatorPtr local_;  // this host's ranks
  CommunicatorPtr cross_;  // one rank per host: those of this local index
  std::unique_ptr<HookThread> worker_;  // runs the three stages of each call, in call order
};

}  // namespace dpt
