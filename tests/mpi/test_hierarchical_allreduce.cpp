// The host-aware all-reduce (dpt::HierarchicalAllreduce) at every world size the mpi suite runs:
// consecutive ranks taken as hosts of 2 (ranks_per_host), it equals the flat all-reduce (Sum and
// Avg, sizes that split evenly over a host's ranks and sizes that need padding), and DDP with its
// comm hook trains like one process on the global batch. Where the layout does not help (one rank
// per host, unequal hosts) it is the flat all-reduce.
#include <gtest/gtest.h>

#include "ddp_test_util.h"
#include "dptrain/parallel/comm_hooks/hierarchical_allreduce.h"

namespace dpt::testing::ddp {
namespace {

TEST(HierarchicalAllreduce, EqualsTheFlatAllreduce) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto hierarchical = std::make_shared<HierarchicalAllreduce>(comm, 2);
  EXPECT_EQ(hierarchical->helps(), W % 2 == 0 && W >= 4) << "hosts of 2 ranks";
  if (hierarchical->helps()) {
    EXPECT_EQ(hierarchical->layout().hosts, W / 2);
    EXPECT_EQ(hierarchical->layout().local_rank, rank % 2);
  }
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{4096}}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(100 + rank));
      auto mine = torch::randn({n}, generator).to(test_device());
      auto flat = mine.clone(), ours = mine.clone();
      comm->allreduce(flat, op);
      hierarchical->allreduce_async(ours, op)->wait();
      EXPECT_TRUE(torch::allclose(ours, flat, 1e-5, 1e-6)) << "n " << n;
    }
  }
}

TEST(HierarchicalAllreduce, DdpWithItsHookEqualsOneProcess) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto hierarchical = std::make_shared<HierarchicalAllreduce>(comm, 2);
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm, DdpOptions().bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4));
  ddp.register_comm_hook(hierarchical->comm_hook());
  for (int step = 0; step < 3; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sgd_step(ddp.parameters(), 0.1);
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    sgd_step(reference->parameters(), 0.1);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  expect_changed(ddp.parameters(), initial);
}

TEST(HierarchicalAllreduce, LayoutFromRanksPerHost) {
  auto comm = world();
  const int W = comm->size();
  auto one = discover_host_layout(*comm, 1);
  EXPECT_EQ(one.hosts, W);
  EXPECT_EQ(one.local_size, 1);
  auto three = discover_host_layout(*comm, 3);
  EXPECT_EQ(three.hosts, (W + 2) / 3);
  EXPECT_EQ(three.uniform, W % 3 == 0 || W < 3);
  EXPECT_TRUE(three.contiguous) << "consecutive ranks per host";
  auto real = discover_host_layout(*comm);  // the hostnames: one machine
  EXPECT_EQ(real.hosts, 1);
  EXPECT_EQ(real.local_rank, comm->rank());
}

}  // namespace
}  // namespace dpt::testing::ddp
