// Object collectives: bytes, tensors, state dicts and TorchScript modules from one rank to all.
#include <gtest/gtest.h>

#include <torch/script.h>

#include "dptrain/core/error.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

// Built the same way on every rank so each can check what arrives; only the root sends it.
NamedTensors make_state_dict() {
  NamedTensors tensors;
  tensors["layer1.weight"] = torch::arange(12, torch::kFloat32).view({3, 4}) / 7.0;
  tensors["layer1.bias"] = torch::tensor({-1.5, 2.25}, torch::kFloat64);
  tensors["bn.num_batches_tracked"] = torch::tensor(int64_t{42});
  tensors["half"] = torch::linspace(-2, 2, 9).to(torch::kFloat16);
  tensors["mask"] = torch::tensor({1, 0, 1}, torch::kUInt8);
  tensors["empty"] = torch::empty({0, 5});
  return tensors;
}

TEST(CommObjects, BytesBroadcastAndAllgather) {
  auto comm = world();
  const int root = comm->size() - 1;
  Bytes mine(static_cast<size_t>(comm->rank() * 3), static_cast<char>('a' + comm->rank()));
  Bytes got = comm->broadcast_bytes(comm->rank() == root ? mine : Bytes{}, root);
  EXPECT_EQ(got, Bytes(static_cast<size_t>(root * 3), static_cast<char>('a' + root)));
  auto all = comm->allgather_bytes(mine);
  ASSERT_EQ(all.size(), static_cast<size_t>(comm->size()));
  for (int r = 0; r < comm->size(); ++r) {
    EXPECT_EQ(all[static_cast<size_t>(r)], Bytes(static_cast<size_t>(r * 3), static_cast<char>('a' + r)));
  }
}

TEST(CommObjects, TensorBroadcastKeepsShapeAndDtype) {
  auto comm = world();
  auto source = torch::arange(24, torch::kInt64).view({2, 3, 4}).transpose(0, 2);  // non-contiguous is fine here
  auto got = comm->broadcast_tensor(comm->rank() == 0 ? source : torch::Tensor(), 0);
  EXPECT_EQ(got.sizes(), source.sizes());
  EXPECT_EQ(got.scalar_type(), torch::kInt64);
  EXPECT_TRUE(got.equal(source));
}

TEST(CommObjects, StateDictFromRankZeroArrivesIntact) {
  auto comm = world();
  auto expected = make_state_dict();
  auto got = comm->broadcast_named_tensors(comm->rank() == 0 ? expected : NamedTensors{}, 0);
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got[name].scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(got[name].sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(got[name].equal(tensor)) << name;
  }
}

TEST(CommObjects, TorchScriptModuleFromRankZeroRunsEverywhere) {
  auto comm = world();
  std::unique_ptr<torch::jit::Module> module;
  if (comm->rank() == 0) {
    module = std::make_unique<torch::jit::Module>("Scale");
    module->register_parameter("weight", torch::tensor({2.0f, -3.0f}), false);
    module->register_buffer("offset", torch::tensor({0.5f, 0.25f}));
    module->define("def forward(self, x):\n  return x * self.weight + self.offset\n");
  }
  auto got = comm->broadcast_module(module.get(), 0);
  auto out = got.forward({torch::tensor({1.0f, 2.0f})}).toTensor();
  EXPECT_TRUE(out.equal(torch::tensor({2.5f, -5.75f}))) << out;
  EXPECT_EQ(got.attr("weight").toTensor()[1].item<float>(), -3.0f);
}

TEST(CommObjects, RootFailureReachesEveryRank) {
  auto comm = world();
  // The root passes no module: it throws its own InvalidArgumentError, the others are told.
  try {
    comm->broadcast_module(nullptr, 0);
    FAIL() << "expected an error";
  } catch (const InvalidArgumentError& e) {
    EXPECT_EQ(comm->rank(), 0) << e.what();
  } catch (const CommunicationError& e) {
    EXPECT_NE(comm->rank(), 0);
    EXPECT_NE(std::string(e.what()).find("rank 0 failed"), std::string::npos) << e.what();
  }
  comm->barrier();
}

}  // namespace
}  // namespace dpt::testing
