// scatter / gather of DataParallel: torch.chunk's split sizes, nested inputs, differentiability.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "dptrain/core/error.h"
#include "dptrain/parallel/data_parallel/scatter_gather.h"
#include "test_support.h"

namespace {

using dpt::testing::cpus;

TEST(ScatterGather, ChunkSizesFollowTorchChunk) {
  for (int64_t batch : {0, 1, 2, 5, 9, 10, 17, 64}) {
    for (int64_t parts : {1, 2, 3, 4, 8}) {
      std::vector<int64_t> expected;
      for (const auto& piece : torch::zeros({batch}).chunk(parts)) expected.push_back(piece.size(0));
      if (batch == 0) expected = {0};  // one empty piece, one replica
      EXPECT_EQ(dpt::chunk_sizes(batch, parts), expected) << batch << " over " << parts;
    }
  }
  EXPECT_EQ(dpt::chunk_sizes(10, 3), (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(dpt::chunk_sizes(5, 4), (std::vector<int64_t>{2, 2, 1}));
}

TEST(ScatterGather, NestedInputsAreSplitAndOtherValuesReplicated) {
  auto x = torch::arange(10).reshape({5, 2});
  auto y = torch::arange(5);
  auto z = torch::arange(15).reshape({5, 3});
  std::vector<c10::IValue> inputs{x, c10::ivalue::Tuple::create({y, c10::List<torch::Tensor>({z})}), 7};
  auto pieces = dpt::scatter(inputs, cpus(4));
  ASSERT_EQ(pieces.size(), 3u);  // 2 + 2 + 1 rows
  int64_t row = 0;
  for (const auto& piece : pieces) {
    ASSERT_EQ(piece.size(), 3u);
    auto rows = piece[0].toTensor().size(0);
    EXPECT_TRUE(torch::equal(piece[0].toTensor(), x.slice(0, row, row + rows)));
    const auto& tuple = piece[1].toTupleRef().elements();
    EXPECT_TRUE(torch::equal(tuple[0].toTensor(), y.slice(0, row, row + rows)));
    EXPECT_TRUE(tuple[1].isTensorList());
    EXPECT_TRUE(torch::equal(tuple[1].toTensorList().get(0), z.slice(0, row, row + rows)));
    EXPECT_EQ(piece[2].toInt(), 7);
    row += rows;
  }
  EXPECT_EQ(row, 5);
  // No tensor at all: one replica gets everything.
  EXPECT_EQ(dpt::scatter({c10::IValue(3)}, cpus(4)).size(), 1u);
  // The smallest split decides: 2 rows and 9 rows over 4 devices -> 2 replicas.
  EXPECT_EQ(dpt::scatter({torch::zeros({2}), torch::zeros({9})}, cpus(4)).size(), 2u);
}

TEST(ScatterGather, ScatterThenGatherIsDifferentiableIdentity) {
  auto x = torch::randn({7, 3}, torch::requires_grad());
  auto pieces = dpt::scatter({x}, cpus(3));
  std::vector<c10::IValue> outputs;
  for (auto& piece : pieces) outputs.push_back(piece[0].toTensor() * 2);
  auto joined = dpt::gather(outputs, torch::kCPU).toTensor();
  EXPECT_TRUE(torch::equal(joined, x * 2));
  joined.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::full({7, 3}, 2.0)));
}

TEST(ScatterGather, GatherStacksScalarsAndJoinsTuples) {
  auto gathered = dpt::gather({torch::tensor(1.0), torch::tensor(2.0)}, torch::kCPU).toTensor();
  EXPECT_TRUE(torch::equal(gathered, torch::tensor({1.0, 2.0})));
  auto tuples = dpt::gather({c10::ivalue::Tuple::create({torch::ones({1, 2}), c10::IValue()}),
                             c10::ivalue::Tuple::create({torch::zeros({2, 2}), c10::IValue()})},
                            torch::kCPU);
  const auto& elements = tuples.toTupleRef().elements();
  EXPECT_EQ(elements[0].toTensor().sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(elements[1].isNone());
}

TEST(ScatterGather, BadInputsAndOutputsAreClearErrors) {
  EXPECT_THROW(dpt::scatter({torch::tensor(1.0)}, cpus(2)), dpt::InvalidArgumentError);  // 0-dim input
  EXPECT_THROW(dpt::gather({torch::ones({1}), c10::IValue(3)}, torch::kCPU), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::gather({c10::IValue(std::string("a")), c10::IValue(std::string("b"))}, torch::kCPU),
               dpt::InvalidArgumentError);
}

}  // namespace
