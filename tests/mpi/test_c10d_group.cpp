// dptrain's Communicator registered as a c10d process group: PyTorch's functional collectives
// (the ops a compiled program calls, by group name) run on it and give what the Communicator's own
// collectives give, computed here from every rank's known input.
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "communicator_test_util.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/c10d/process_group.h"
#include "test_support.h"

namespace dpt::testing::c10d_group {

// Calls _c10d_functional::<name> through the dispatcher, as AOTInductor's generated code does,
// then waits as its wait_tensor does.
torch::Tensor functional(const std::string& name, std::vector<c10::IValue> args) {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow(("_c10d_functional::" + name).c_str(), "");
  torch::jit::Stack stack(args.begin(), args.end());
  op.callBoxed(&stack);
  auto wait = c10::Dispatcher::singleton().findSchemaOrThrow("_c10d_functional::wait_tensor", "");
  torch::jit::Stack waited{stack.at(0)};
  wait.callBoxed(&waited);
  return waited.at(0).toTensor();
}

TEST(C10dGroup, FunctionalAllReduceRunsOnTheCommunicator) {
  auto comm = world();
  C10dGroupRegistration group("dpt_test_allreduce", comm);
  const int64_t numel = 1031;
  for (auto [name, op] : {std::pair{"sum", ReduceOp::Sum}, std::pair{"max", ReduceOp::Max},
                          std::pair{"min", ReduceOp::Min}, std::pair{"product", ReduceOp::Product}}) {
    auto input = rank_tensor(comm->rank(), numel, torch::kFloat);
    auto reduced = functional("all_reduce", {input, std::string(name), group.name()});
    EXPECT_LE(max_relative_error(reduced, expected_reduction(comm->size(), numel, op)), 1e-6) << name;
  }
  auto input = rank_tensor(comm->rank(), numel, torch::kFloat);
  auto averaged = functional("all_reduce", {input, std::string("avg"), group.name()});
  EXPECT_LE(max_relative_error(averaged, expected_reduction(comm->size(), numel, ReduceOp::Sum) / comm->size()), 1e-6);
}

TEST(C10dGroup, FunctionalGatherScatterAndBroadcastRunOnTheCommunicator) {
  auto comm = world();
  C10dGroupRegistration group("dpt_test_gather", comm);
  const int64_t numel = 37;
  auto gathered = functional("all_gather_into_tensor",
                             {rank_tensor(comm->rank(), numel, torch::kFloat), int64_t{comm->size()}, group.name()});
  ASSERT_EQ(gathered.numel(), numel * comm->size());
  for (int r = 0; r < comm->size(); ++r) {
    EXPECT_TRUE(gathered.slice(0, r * numel, (r + 1) * numel).equal(rank_tensor(r, numel, torch::kFloat))) << r;
  }
  auto scattered = functional("reduce_scatter_tensor", {rank_tensor(comm->rank(), numel * comm->size(), torch::kFloat),
                                                        std::string("sum"), int64_t{comm->size()}, group.name()});
  auto expected = expected_reduction(comm->size(), numel * comm->size(), ReduceOp::Sum)
                      .slice(0, comm->rank() * numel, (comm->rank() + 1) * numel);
  EXPECT_LE(max_relative_error(scattered, expected), 1e-6);
  const int root = comm->size() - 1;
  auto broadcast = functional("broadcast", {rank_tensor(comm->rank(), numel, torch::kFloat), int64_t{root}, group.name()});
  EXPECT_TRUE(broadcast.equal(rank_tensor(root, numel, torch::kFloat)));
}

TEST(C10dGroup, ANameIsOneGroupAtATime) {
  auto comm = world();
  {
    C10dGroupRegistration group("dpt_test_name", comm);
    EXPECT_THROW(C10dGroupRegistration("dpt_test_name", comm), InvalidArgumentError);
  }
  // The first registration's end freed the name.
  C10dGroupRegistration again("dpt_test_name", comm);
  auto summed = functional("all_reduce", {torch::ones({3}), std::string("sum"), again.name()});
  EXPECT_TRUE(summed.equal(torch::full({3}, static_cast<float>(comm->size()))));
  EXPECT_THROW(C10dGroupRegistration("", comm), InvalidArgumentError);
}

TEST(C10dGroup, AnUnsupportedReductionIsOneClearError) {
  auto comm = world();
  C10dGroupRegistration group("dpt_test_bitwise", comm);
  try {
    functional("all_reduce", {torch::ones({3}, torch::kInt32), std::string("band"), group.name()});
    FAIL() << "a bitwise and was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("is not one of sum, avg, min, max, product"), std::string::npos)
        << error.what();
  }
}

}  // namespace dpt::testing::c10d_group
