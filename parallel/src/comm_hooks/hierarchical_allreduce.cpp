#include "dptrain/parallel/comm_hooks/hierarchical_allreduce.h"

#include <unistd.h>

#include <map>

#include "comm_hooks/hook_thread.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"

namespace dpt {

HostLayout discover_host_layout(Communicator& world, std::optional<int> ranks_per_host) {
  const int size = world.size(), rank = world.rank();
  std::vector<std::string> names(size);
  if (ranks_per_host) {
    DPT_CHECK(*ranks_per_host > 0, InvalidArgumentError, "ranks_per_host must be > 0, got ", *ranks_per_host);
    for (int r = 0; r < size; ++r) names[r] = "host" + std::to_string(r / *ranks_per_host);
  } else {
    const std::string mine = env::host_name();
    const auto all = world.allgather_bytes(Bytes(mine.begin(), mine.end()));
    for (int r = 0; r < size; ++r) names[r] = std::string(all[r].begin(), all[r].end());
  }
  std::map<std::string, int> host_of;  // name -> index, in order of the hosts' lowest ranks
  std::vector<int> count;
  for (int r = 0; r < size; ++r) {
    auto [it, added] = host_of.emplace(names[r], static_cast<int>(count.size()));
    if (added) count.push_back(0);
    ++count[it->second];
  }
  HostLayout layout;
  layout.hosts = static_cast<int>(count.size());
  layout.host = host_of.at(names[rank]);
  layout.local_size = count[layout.host];
  for (int r = 0; r < rank; ++r) layout.local_rank += names[r] == names[rank] ? 1 : 0;
  for (int c : count) layout.uniform = layout.uniform && c == count.front();
  // Each host's ranks form one block exactly when the host changes hosts - 1 times along the ranks.
  int changes = 0;
  for (int r = 1; r < size; ++r) changes += names[r] != names[r - 1] ? 1 : 0;
  layout.contiguous = changes == layout.hosts - 1;
  return layout;
}

HierarchicalAllreduce::HierarchicalAllreduce(CommunicatorPtr world, std::optional<int> ranks_per_host)
    : world_(std::move(world)) {
  DPT_CHECK(world_, InvalidArgumentError, "HierarchicalAllreduce needs a communicator");
  layout_ = discover_host_layout(*world_, ranks_per_host);
  if (!helps()) return;  // the world's own all-reduce; no splits, no thread
  local_ = world_->split(layout_.host, layout_.local_rank);
  cross_ = world_->split(layout_.local_rank, layout_.host);
  worker_ = std::make_unique<HookThread>("HierarchicalAllreduce");
}

HierarchicalAllreduce::~HierarchicalAllreduce() = default;

void HierarchicalAllreduce::run_stages(torch::Tensor& tensor, ReduceOp op) {
  const int64_t n = tensor.numel();
  const int64_t parts = layout_.local_size;
  const int64_t piece = (n + parts - 1) / parts;
  torch::Tensor flat = tensor.view({-1});
  // The buffer must split into equal pieces: padded with zeros when it does not.
  torch::Tensor buffer = n == piece * parts ? flat : torch::zeros({piece * parts}, tensor.options());
  if (!buffer.is_same(flat)) buffer.narrow(0, 0, n).copy_(flat);
  torch::Tensor mine = torch::empty({piece}, tensor.options());
  local_->reduce_scatter_async(buffer, mine, ReduceOp::Sum)->wait();
  cross_->allreduce_async(mine, ReduceOp::Sum)->wait();
  local_->allgather_async(mine, buffer)->wait();
  if (!buffer.is_same(flat)) flat.copy_(buffer.narrow(0, 0, n));
  if (op == ReduceOp::Avg) tensor.div_(world_->size());
}

WorkPtr HierarchicalAllreduce::allreduce_async(torch::Tensor tensor, ReduceOp op) {
  DPT_CHECK(op == ReduceOp::Sum || op == ReduceOp::Avg, InvalidArgumentError,
            "HierarchicalAllreduce: Sum or Avg (ops that add pieces); got another op");
  DPT_CHECK(tensor.is_contiguous(), InvalidArgumentError, "HierarchicalAllreduce: the tensor must be contiguous");
  if (!helps()) return world_->allreduce_async(tensor, op);
  return worker_->submit([this, tensor, op]() mutable { run_stages(tensor, op); }, tensor.device());
}

CommHook HierarchicalAllreduce::comm_hook() {
  std::shared_ptr<HierarchicalAllreduce> self = shared_from_this();
  return [self](GradBucket& bucket) {
    return comm_hooks::average_when_summed(self->allreduce_async(bucket.buffer(), ReduceOp::Sum), bucket);
  };
}

}  // namespace dpt
