// The built-in models: shapes, training-mode behaviour, and the save -> load round trip that
// `dptrain eval/infer` rely on (PyTorch's side of it is checked by tests/cli/test_torchscript_roundtrip.py).
#include <gtest/gtest.h>

#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "test_support.h"

namespace {

struct Case {
  const char* name;
  int64_t channels, size;
};

}  // namespace

TEST(TrainerModels, BuiltinsMapImagesToClassScores) {
  for (Case c : {Case{"mlp", 1, 28}, Case{"cnn", 1, 28}, Case{"cnn", 3, 32}, Case{"resnet18", 1, 28}, Case{"resnet18", 3, 32}}) {
    torch::manual_seed(0);
    dpt::Model model(dpt::make_builtin_model(c.name, {c.channels, c.size, c.size, 10}));
    auto out = model.forward(torch::rand({3, c.channels, c.size, c.size}));
    EXPECT_EQ(out.sizes(), torch::IntArrayRef({3, 10})) << c.name;
    EXPECT_FALSE(model.named_parameters().empty());
  }
}

TEST(TrainerModels, ResNetHasElevenMillionParametersAndBatchNormBuffers) {
  dpt::Model model(dpt::make_builtin_model("resnet18", {3, 32, 32, 10}));
  int64_t count = 0;
  for (auto& p : model.parameters()) count += p.numel();
  // torchvision's CIFAR-style ResNet-18 with 10 classes: 11,173,962 parameters.
  EXPECT_EQ(count, 11173962);
  EXPECT_EQ(model.named_buffers().size(), 2u * 20u);  // running mean + var of 20 BatchNorms
}

TEST(TrainerModels, SameSeedSameModel) {
  torch::manual_seed(7);
  dpt::Model a(dpt::make_builtin_model("cnn"));
  torch::manual_seed(7);
  dpt::Model b(dpt::make_builtin_model("cnn"));
  auto pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

TEST(TrainerModels, BatchNormUpdatesRunningStatsOnlyInTraining) {
  dpt::Model model(dpt::make_builtin_model("resnet18", {1, 28, 28, 10}));
  auto mean_before = model.named_buffers()[0].second.clone();
  model.eval();
  model.forward(torch::rand({2, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(mean_before, model.named_buffers()[0].second));
  model.train();
  model.forward(torch::rand({2, 1, 28, 28}));
  EXPECT_FALSE(torch::equal(mean_before, model.named_buffers()[0].second));
}

TEST(TrainerModels, SavedBuiltinLoadsBackWithIdenticalOutputs) {
  dpt::testing::TempDir dir;
  for (const auto& name : dpt::builtin_model_names()) {
    auto net = dpt::make_builtin_model(name);
    net.eval();
    net.save(dir.file(name + ".pt"));
    auto loaded = dpt::Model::load_torchscript(dir.file(name + ".pt"));
    loaded.eval();
    auto x = torch::rand({2, 1, 28, 28});
    EXPECT_TRUE(torch::equal(dpt::Model(net).forward(x), loaded.forward(x))) << name;
  }
}

TEST(TrainerModels, UnknownNameIsAnInvalidArgumentNamingTheBuiltins) {
  try {
    dpt::make_builtin_model("vgg");
    FAIL() << "vgg accepted";
  } catch (const dpt::InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("resnet18"), std::string::npos) << e.what();
  }
}
