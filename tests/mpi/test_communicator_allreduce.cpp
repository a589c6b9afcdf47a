// Allreduce for every op x dtype x a few sizes, against a reduction computed in double locally.
#include <gtest/gtest.h>

#include <tuple>

#include "communicator_test_util.h"
#include "dptrain/core/error.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

using AllreduceParam = std::tuple<ReduceOp, c10::ScalarType>;

class CommAllreduce : public ::testing::TestWithParam<AllreduceParam> {};

TEST_P(CommAllreduce, MatchesLocalReduction) {
  auto [op, dtype] = GetParam();
  if (op == ReduceOp::Avg && !c10::isFloatingType(dtype)) GTEST_SKIP() << "avg is rejected for integers";
  auto comm = world();
  for (int64_t numel : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{4099}}) {
    auto tensor = rank_tensor(comm->rank(), numel, dtype);
    comm->allreduce(tensor, op);
    EXPECT_EQ(tensor.scalar_type(), dtype);
    auto expected = expected_reduction(comm->size(), numel, op);
    EXPECT_LE(max_relative_error(tensor, expected), tolerance(dtype))
        << "numel " << numel << ", world " << comm->size();
  }
}

TEST_P(CommAllreduce, AsyncKeepsIssueOrder) {
  auto [op, dtype] = GetParam();
  if (op == ReduceOp::Avg && !c10::isFloatingType(dtype)) GTEST_SKIP();
  auto comm = world();
  std::vector<torch::Tensor> tensors;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 5; ++i) {
    tensors.push_back(rank_tensor(comm->rank(), 33, dtype, /*offset=*/i));
    works.push_back(comm->allreduce_async(tensors.back(), op));
  }
  for (int i = 4; i >= 0; --i) works[static_cast<size_t>(i)]->wait();  // any wait order
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(works[static_cast<size_t>(i)]->is_completed());
    EXPECT_LE(max_relative_error(tensors[static_cast<size_t>(i)], expected_reduction(comm->size(), 33, op, i)),
              tolerance(dtype));
  }
}

std::string param_name(const ::testing::TestParamInfo<AllreduceParam>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + dtype_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllOpsAllDtypes, CommAllreduce,
                         ::testing::Combine(::testing::Values(ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Min,
                                                              ReduceOp::Max, ReduceOp::Product),
                                            ::testing::ValuesIn(all_dtypes())),
                         param_name);

TEST(CommAllreduceErrors, AvgOnIntegersIsRejected) {
  auto comm = world();
  auto tensor = torch::ones({4}, torch::TensorOptions(torch::kInt32).device(comm->device()));
  try {
    comm->allreduce(tensor, ReduceOp::Avg);
    FAIL() << "expected InvalidArgumentError";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("avg needs a floating-point tensor"), std::string::npos) << e.what();
  }
  // The communicator is still usable.
  comm->allreduce(tensor, ReduceOp::Sum);
  EXPECT_EQ(tensor[0].item<int>(), comm->size());
}

}  // namespace
}  // namespace dpt::testing
