// Uneven inputs: dpt::Join, PyTorch's Join context manager for DDP.
//
// Without it, a rank that runs out of batches stops calling collectives and the others wait in
// their next gradient allreduce forever - the most reported DDP hang. Inside a Join, every
// training forward first agrees (one tiny allgather) on which ranks still have data. A rank that
// finished its loop calls finish(): until every rank has finished it "shadows" the others'
// iterations - the same buffer broadcast and bucket reductions, with zero gradients. When all
// have finished, parameters and buffers are copied from the last rank that trained, so every
// rank ends with the same model.
//
//   dpt::Join join(ddp, dpt::JoinOptions().divide_by_initial_world_size(false));
//   for (auto& batch : my_batches) { ... ddp.forward(x) ... loss.backward(); opt.step(); }
//   join.finish();   // returns once every rank is done
//
// throw_on_early_termination(true): instead of shadowing, all ranks throw DataError at the first
// iteration where some rank has run out (the active ranks in forward, the finished one in finish()).
//
// Gradient scale: with divide_by_initial_world_size (default, as PyTorch) the summed gradients are
// divided by the world size even when fewer ranks contributed; with false, by the number of ranks
// that still train, so each iteration averages over the samples actually seen.
#pragma once

#include <torch/arg.h>

namespace dpt {

class DistributedDataParallel;

struct JoinOptions {
  TORCH_ARG(bool, enable) = true;
  TORCH_ARG(bool, throw_on_early_termination) = false;
  TORCH_ARG(bool, divide_by_initial_world_size) = true;
};

class Join {
 public:
  explicit Join(DistributedDataParallel& ddp, JoinOptions options = {});
  // Calls finish() when it was not called and no exception is unwinding (errors are logged).
  ~Join();
  Join(const Join&) = delete;
  Join& operator=(const Join&) = delete;

  // Collective over all ranks of the DDP communicator: shadows the other ranks until all finished.
  void finish();

 private:
  DistributedDataParallel* ddp_;
  JoinOptions options_;
  bool finished_ = false;
};

}  // namespace dpt
