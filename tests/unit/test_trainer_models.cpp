// The built-in models: shapes, training-mode behaviour, and the save -> load round trip that
// `dptrain eval/infer` rely on (PyTorch's side of it is checked by tests/cli/test_torchscript_roundtrip.py).
#include <gtest/gtest.h>

#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "models/gpt.h"
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
    auto x = dpt::is_builtin_language_model(name) ? torch::randint(0, 10, {2, 16}) : torch::rand({2, 1, 28, 28});
    EXPECT_TRUE(torch::equal(dpt::Model(net).forward(x), loaded.forward(x))) << name;
  }
}

TEST(TrainerModels, GptIsCausalWithTiedHeadAndTheParametersCounted) {
  torch::manual_seed(0);
  dpt::ModelZooOptions options;
  options.num_classes = 50, options.context = 12, options.gpt_layers = 2, options.gpt_dim = 32, options.gpt_heads = 4;
  dpt::Model gpt(dpt::make_builtin_model("gpt", options));
  gpt.eval();
  auto tokens = torch::randint(0, 50, {3, 12});
  auto logits = gpt.forward(tokens);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 12, 50}));
  // A later token never changes an earlier position's logits.
  auto changed = tokens.clone();
  changed.select(1, 8).fill_(7);
  auto again = gpt.forward(changed);
  EXPECT_TRUE(torch::allclose(logits.narrow(1, 0, 8), again.narrow(1, 0, 8), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(logits.narrow(1, 8, 4), again.narrow(1, 8, 4), 1e-6, 1e-6));
  // The head is the token embedding: no separate output matrix.
  int64_t counted = 0;
  for (const auto& [name, p] : gpt.named_parameters()) {
    if (name != "wpe_weight") counted += p.numel();
    EXPECT_EQ(name.find("head"), std::string::npos) << name;
  }
  dpt::GptOptions sizes;
  sizes.vocab_size = 50, sizes.positions = 12, sizes.layers = 2, sizes.dim = 32, sizes.heads = 4;
  EXPECT_EQ(counted, dpt::gpt_parameters(sizes));
  // Longer than its positions: one error saying so.
  try {
    gpt.forward(torch::randint(0, 50, {1, 13}));
    FAIL() << "13 tokens accepted by a 12-position GPT";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("longer than the 12 positions"), std::string::npos) << e.what();
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
