// Checkpoint files: round trip of every part, truncation and corruption named by file, the last-K
// policy, falling back to the previous intact checkpoint, and files of the first format.
// (PyTorch reading ours and writing its own: tests/cli/test_checkpoint_interop.py.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/checkpoint_v1.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"
#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "dptrain/trainers/optim/optim.h"
#include "dptrain/trainers/optim/optimizer_state_dict.h"
#include "test_support.h"

namespace {

dpt::Model make_model(int64_t seed) {
  torch::manual_seed(seed);
  return dpt::Model(dpt::make_builtin_model("mlp", {1, 4, 4, 3}));
}

// One optimizer step on a fixed batch.
void train_step(dpt::Model& model, torch::optim::Optimizer& optimizer, int64_t batch_seed) {
  torch::manual_seed(batch_seed);
  optimizer.zero_grad();
  model.forward(torch::rand({5, 1, 4, 4})).pow(2).sum().backward();
  optimizer.step();
}

dpt::Checkpoint sample_checkpoint(int64_t step) {
  dpt::Model model = make_model(step);
  auto optimizer = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("adam").lr(0.01));
  train_step(model, *optimizer, 1);
  dpt::Checkpoint checkpoint;
  checkpoint.epoch = 2;
  checkpoint.batch_in_epoch = 7;
  checkpoint.step = step;
  checkpoint.world_size = 4;
  checkpoint.seed = 11;
  checkpoint.global_batch = 256;
  checkpoint.epoch_offset = 96;
  checkpoint.model = model.state_dict();
  checkpoint.optimizer = dpt::optimizer_state_dict(*optimizer);
  checkpoint.generator_states.emplace("cpu/0", at::detail::getDefaultCPUGenerator().get_state());
  checkpoint.generator_states.emplace("cpu/1", torch::arange(7, torch::kUInt8));
  checkpoint.loss_scale = 1024.0;
  checkpoint.loss_scale_growth_tracker = 17;
  return checkpoint;
}

using dpt::testing::error_of;

void expect_same_parameters(dpt::Model& a, dpt::Model& b) {
  auto pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
}

}  // namespace

TEST(TrainerCheckpoint, RoundTripsEveryPart) {
  auto original = sample_checkpoint(42);
  auto decoded = dpt::decode_checkpoint(dpt::encode_checkpoint(original), "memory");
  EXPECT_EQ(decoded.epoch, 2);
  EXPECT_EQ(decoded.batch_in_epoch, 7);
  EXPECT_EQ(decoded.step, 42);
  EXPECT_EQ(decoded.world_size, 4);
  EXPECT_EQ(decoded.seed, 11);
  EXPECT_EQ(decoded.global_batch, 256);
  EXPECT_EQ(decoded.epoch_offset, 96);
  EXPECT_EQ(decoded.loss_scale, 1024.0);
  EXPECT_EQ(decoded.loss_scale_growth_tracker, 17);
  ASSERT_EQ(decoded.generator_states.size(), 2u);
  for (auto& [name, state] : original.generator_states) {
    EXPECT_TRUE(torch::equal(decoded.generator_states.at(name), state)) << name;
  }
  ASSERT_EQ(decoded.model.size(), original.model.size());
  for (auto& [name, tensor] : original.model) EXPECT_TRUE(torch::equal(decoded.model.at(name), tensor)) << name;
  EXPECT_TRUE(decoded.legacy_optimizer.empty());
  EXPECT_TRUE(decoded.optimizer.isGenericDict());
}

// Each optimizer's state goes through PyTorch's layout and back: the restored optimizer's next
// steps equal the original's, bit for bit.
class OptimizerRoundTrip : public ::testing::TestWithParam<dpt::OptimizerOptions> {};

TEST_P(OptimizerRoundTrip, ContinuesExactlyLikeTheOriginal) {
  dpt::Model model = make_model(3), restored = make_model(4);
  auto optimizer = dpt::make_optimizer(model.parameters(), GetParam());
  for (int64_t s = 0; s < 3; ++s) train_step(model, *optimizer, 10 + s);

  dpt::Checkpoint checkpoint;
  checkpoint.model = model.state_dict();
  checkpoint.optimizer = dpt::optimizer_state_dict(*optimizer);
  auto decoded = dpt::decode_checkpoint(dpt::encode_checkpoint(checkpoint), "memory");
  restored.load_state_dict(decoded.model);
  // Other hyperparameters on the command line: the checkpoint's win (as in PyTorch).
  auto options = GetParam();
  options.lr(options.lr() * 3).weight_decay(0.5);
  auto continued = dpt::make_optimizer(restored.parameters(), options);
  dpt::load_optimizer_state(*continued, decoded, "memory");
  EXPECT_EQ(continued->state().size(), optimizer->state().size());

  for (int64_t s = 3; s < 6; ++s) {
    train_step(model, *optimizer, 10 + s);
    train_step(restored, *continued, 10 + s);
  }
  expect_same_parameters(model, restored);
}

INSTANTIATE_TEST_SUITE_P(
    TrainerCheckpoint, OptimizerRoundTrip,
    ::testing::Values(dpt::OptimizerOptions().name("sgd").lr(0.05).momentum(0.9).weight_decay(1e-3),
                      dpt::OptimizerOptions().name("sgd").lr(0.05).momentum(0.9).nesterov(true),
                      dpt::OptimizerOptions().name("sgd").lr(0.05),
                      dpt::OptimizerOptions().name("adam").lr(0.01).weight_decay(1e-3),
                      dpt::OptimizerOptions().name("adamw").lr(0.01).beta1(0.8)),
    [](const auto& info) { return info.param.name() + std::to_string(info.index); });

TEST(TrainerCheckpoint, AnotherOptimizersStateIsAClearError) {
  dpt::Model model = make_model(1);
  auto adam = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("adam"));
  train_step(model, *adam, 2);
  auto saved = dpt::optimizer_state_dict(*adam);

  auto sgd = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("sgd").momentum(0.9));
  auto message = error_of([&] { dpt::load_optimizer_state_dict(*sgd, saved, "ckpt.pt"); });
  EXPECT_NE(message.find("ckpt.pt"), std::string::npos) << message;
  EXPECT_NE(message.find("--optimizer adam"), std::string::npos) << message;

  auto adamw = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("adamw"));
  message = error_of([&] { dpt::load_optimizer_state_dict(*adamw, saved, "ckpt.pt"); });
  EXPECT_NE(message.find("--optimizer adam"), std::string::npos) << message;

  // Same optimizer, another model: the parameter and both shapes are named.
  torch::manual_seed(0);
  dpt::Model other(dpt::make_builtin_model("mlp", {1, 4, 5, 3}));
  auto other_adam = dpt::make_optimizer(other.parameters(), dpt::OptimizerOptions().name("adam"));
  message = error_of([&] { dpt::load_optimizer_state_dict(*other_adam, saved, "ckpt.pt"); });
  EXPECT_NE(message.find("parameter 0"), std::string::npos) << message;
  EXPECT_NE(message.find("shape"), std::string::npos) << message;
}

// A rank resumes with the optimizer state on its parameters' device, whatever device the saving
// rank used (map_location): on a multi-GPU node rank 3 must not get cuda:0 tensors. The meta
// device stands in for "another device" on a machine without GPUs.
TEST(TrainerCheckpoint, OptimizerStateLoadsOntoTheRequestedDevice) {
  dpt::Model model = make_model(5);
  const auto sgd = dpt::OptimizerOptions().name("sgd").lr(0.01).momentum(0.9);
  auto trained = dpt::make_optimizer(model.parameters(), sgd);
  train_step(model, *trained, 6);
  const auto saved = dpt::optimizer_state_dict(*trained);

  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters()) {
    params.push_back(torch::empty(p.sizes(), p.options().device(torch::kMeta)).requires_grad_());
  }
  auto optimizer = dpt::make_optimizer(params, sgd);
  dpt::load_optimizer_state_dict(*optimizer, saved, "memory");
  ASSERT_EQ(optimizer->state().size(), params.size());
  for (const auto& [key, state] : optimizer->state()) {
    EXPECT_TRUE(static_cast<torch::optim::SGDParamState&>(*state).momentum_buffer().is_meta()) << key;
  }
}

TEST(TrainerCheckpoint, TruncatedAndCorruptFilesAreNamed) {
  auto checkpoint = sample_checkpoint(1);
  // A parameter with a pattern that can be found in the file's bytes.
  auto marker = torch::full({64}, 1234.5f);
  checkpoint.model["marker"] = marker;
  auto bytes = dpt::encode_checkpoint(checkpoint);
  auto truncated = dpt::Bytes(bytes.begin(), bytes.begin() + bytes.size() / 2);
  auto message = error_of([&] { dpt::decode_checkpoint(truncated, "ckpt/checkpoint-1.pt"); });
  EXPECT_NE(message.find("ckpt/checkpoint-1.pt"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  // One bit of the marker's data: the record's CRC-32 no longer matches. libtorch alone would
  // load it as 1234.5 -> another number.
  const char* pattern = static_cast<const char*>(marker.data_ptr());
  auto at = std::search(bytes.begin(), bytes.end(), pattern, pattern + 64 * sizeof(float));
  ASSERT_NE(at, bytes.end());
  auto flipped = bytes;
  flipped[static_cast<size_t>(at - bytes.begin()) + 13] ^= 0x04;
  message = error_of([&] { dpt::decode_checkpoint(flipped, "ckpt/checkpoint-2.pt"); });
  EXPECT_NE(message.find("checkpoint-2.pt is corrupt"), std::string::npos) << message;
  EXPECT_NE(message.find("CRC"), std::string::npos) << message;

  message = error_of([&] { dpt::decode_checkpoint(dpt::Bytes(40, 'x'), "junk.bin"); });
  EXPECT_NE(message.find("junk.bin is neither a torch.save file nor a dptrain checkpoint"), std::string::npos)
      << message;
}

TEST(TrainerCheckpoint, AFileOfTheFirstFormatStillResumes) {
  dpt::Model model = make_model(8), restored = make_model(9);
  const auto adam = dpt::OptimizerOptions().name("adam").lr(0.01);
  auto optimizer = dpt::make_optimizer(model.parameters(), adam);
  train_step(model, *optimizer, 1);
  torch::serialize::OutputArchive archive;
  optimizer->save(archive);
  std::ostringstream stream;
  archive.save_to(stream);
  const std::string text = stream.str();

  dpt::Checkpoint old;
  old.step = 33, old.epoch = 1, old.seed = 4, old.world_size = 2;
  old.model = model.state_dict();
  old.generator_states.emplace("cpu/0", at::detail::getDefaultCPUGenerator().get_state());
  auto bytes = dpt::checkpoint_v1::encode_for_tests(old, dpt::Bytes(text.begin(), text.end()));
  auto decoded = dpt::decode_checkpoint(bytes, "old.dpt");
  EXPECT_EQ(decoded.step, 33);
  EXPECT_EQ(decoded.seed, 4);
  restored.load_state_dict(decoded.model);
  auto continued = dpt::make_optimizer(restored.parameters(), adam);
  dpt::load_optimizer_state(*continued, decoded, "old.dpt");
  train_step(model, *optimizer, 2);
  train_step(restored, *continued, 2);
  expect_same_parameters(model, restored);

  bytes[bytes.size() - 5] ^= 0x01;
  auto message = error_of([&] { dpt::decode_checkpoint(bytes, "old.dpt"); });
  EXPECT_NE(message.find("old.dpt is corrupt: checksum mismatch"), std::string::npos) << message;
}

TEST(TrainerCheckpoint, KeepsTheNewestKAndFallsBackPastACorruptNewest) {
  dpt::testing::TempDir dir;
  dpt::CheckpointDirectory checkpoints(dir.file("ckpt"), 2);
  checkpoints.prepare();
  for (int64_t step : {10, 20, 30}) checkpoints.write(sample_checkpoint(step));
  auto files = checkpoints.list();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], checkpoints.path_for_step(20));
  EXPECT_EQ(*checkpoints.latest(), checkpoints.path_for_step(30));
  EXPECT_NE(files[1].find("/checkpoint-0000000030.pt"), std::string::npos) << files[1];

  // Corrupt the newest: "latest" falls back to step 20; naming the file itself is an error.
  auto bytes = dpt::read_file(files[1]);
  bytes.resize(bytes.size() - 10);
  {
    FILE* f = std::fopen(files[1].c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  std::string chosen;
  auto good = dpt::read_checkpoint_file("latest", checkpoints.directory(), chosen);
  EXPECT_EQ(chosen, files[0]);
  EXPECT_EQ(dpt::decode_checkpoint(good, chosen).step, 20);
  auto message = error_of([&] { dpt::read_checkpoint_file(files[1], "", chosen); });
  EXPECT_NE(message.find(files[1]), std::string::npos) << message;
}

TEST(TrainerCheckpoint, ResumeWithoutCheckpointsIsAClearError) {
  dpt::testing::TempDir dir;
  std::string chosen;
  auto message = error_of([&] { dpt::read_checkpoint_file("latest", dir.path(), chosen); });
  EXPECT_NE(message.find("no checkpoint"), std::string::npos) << message;
}
