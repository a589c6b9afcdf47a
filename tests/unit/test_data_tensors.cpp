// dpt::Tensors (one tensor or a tuple) through the data pipeline: a TensorDataset of tuples yields
// each part's row, the DataLoader's batches stack each part in order, and the places that need one
// tensor say so in one error.
#include <gtest/gtest.h>

#include "dptrain/core/data/data_loader.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/error.h"

namespace {

TEST(DataTensors, TupleDatasetBatchesStackEachPart) {
  auto a = torch::arange(24, torch::kFloat32).view({6, 4});
  auto b = torch::arange(6, torch::kInt64) * 10;
  auto y = torch::arange(6, torch::kInt64);
  auto data = std::make_shared<dpt::TensorDataset>(dpt::Tensors::tuple({a, b}), y);
  ASSERT_EQ(data->size(), 6);
  auto example = data->get(4);
  ASSERT_TRUE(example.input.is_tuple());
  EXPECT_TRUE(torch::equal(example.input.parts()[0], a[4]));
  EXPECT_TRUE(torch::equal(example.input.parts()[1], b[4]));

  dpt::DataLoader loader(data, dpt::DistributedSampler(6, 0, 1, /*shuffle=*/false),
                         dpt::DataLoaderOptions().batch_size(3).workers(2));
  int64_t seen = 0;
  for (auto& batch : loader.epoch(0)) {
    ASSERT_TRUE(batch.inputs.is_tuple());
    ASSERT_EQ(batch.inputs.parts().size(), 2u);
    auto rows = torch::tensor(batch.indices, torch::kInt64);
    EXPECT_TRUE(torch::equal(batch.inputs.parts()[0], a.index_select(0, rows)));
    EXPECT_TRUE(torch::equal(batch.inputs.parts()[1], b.index_select(0, rows)));
    EXPECT_TRUE(torch::equal(batch.targets, y.index_select(0, rows)));  // one tensor reads as a tensor
    EXPECT_EQ(batch.inputs.samples(), 3);
    seen += batch.size();
  }
  EXPECT_EQ(seen, 6);
}

TEST(DataTensors, OneTensorWhereATupleIsGivenIsOneError) {
  dpt::Tensors pair = dpt::Tensors::tuple({torch::zeros({2, 3}), torch::zeros({2})});
  try {
    (void)pair.tensor("the inputs of a compiled package");
    FAIL() << "a tuple read as one tensor";
  } catch (const dpt::Error& e) {
    EXPECT_EQ(e.kind(), dpt::ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("the inputs of a compiled package are a tuple of 2 tensors ([2, 3], [2])"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(dpt::TensorDataset(dpt::Tensors::tuple({torch::zeros({4, 2}), torch::zeros({3})}), torch::zeros({4})),
               dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::Tensors::stack({pair, dpt::Tensors(torch::zeros({3}))}), dpt::InvalidArgumentError);
}

}  // namespace
