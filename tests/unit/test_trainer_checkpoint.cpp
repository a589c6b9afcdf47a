// Checkpoint files: round trip of every part, truncation and corruption named by file, the last-K
// policy, and falling back to the previous intact checkpoint.
#include <gtest/gtest.h>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"
#include "dptrain/trainers/checkpoint.h"
#include "dptrain/trainers/model_zoo.h"
#include "dptrain/trainers/optim.h"
#include "test_support.h"

namespace {

dpt::Checkpoint sample_checkpoint(int64_t step) {
  torch::manual_seed(step);
  dpt::Model model(dpt::make_builtin_model("mlp", {1, 4, 4, 3}));
  auto optimizer = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("adam").lr(0.01));
  optimizer->zero_grad();
  model.forward(torch::rand({5, 1, 4, 4})).sum().backward();
  optimizer->step();
  dpt::Checkpoint checkpoint;
  checkpoint.epoch = 2;
  checkpoint.batch_in_epoch = 7;
  checkpoint.step = step;
  checkpoint.world_size = 4;
  checkpoint.seed = 11;
  checkpoint.model = model.state_dict();
  checkpoint.optimizer = dpt::save_optimizer_state(*optimizer);
  checkpoint.rng_state = at::detail::getDefaultCPUGenerator().get_state();
  checkpoint.generator_states.emplace("cpu/0", checkpoint.rng_state);
  checkpoint.generator_states.emplace("cpu/3", torch::arange(7, torch::kUInt8));
  checkpoint.extra_json = R"({"loss_scale":1024.0})";
  return checkpoint;
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const dpt::Error& e) {
    return e.what();
  }
  return "";
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
  EXPECT_EQ(decoded.extra_json, R"({"loss_scale":1024.0})");
  EXPECT_TRUE(torch::equal(decoded.rng_state, original.rng_state));
  ASSERT_EQ(decoded.generator_states.size(), 2u);
  EXPECT_TRUE(torch::equal(decoded.generator_states.at("cpu/3"), original.generator_states.at("cpu/3")));
  ASSERT_EQ(decoded.model.size(), original.model.size());
  for (auto& [name, tensor] : original.model) EXPECT_TRUE(torch::equal(decoded.model.at(name), tensor)) << name;
  EXPECT_EQ(decoded.optimizer, original.optimizer);

  // The optimizer state loads into a fresh optimizer and steps exactly like the original.
  torch::manual_seed(42);
  dpt::Model model(dpt::make_builtin_model("mlp", {1, 4, 4, 3}));
  model.load_state_dict(decoded.model);
  auto optimizer = dpt::make_optimizer(model.parameters(), dpt::OptimizerOptions().name("adam").lr(0.01));
  dpt::load_optimizer_state(*optimizer, decoded.optimizer, "memory");
  auto& state = optimizer->state();
  EXPECT_EQ(state.size(), model.parameters().size());
}

// A rank resumes with the optimizer state on its parameters' device, whatever device the saving
// rank used (map_location): on a multi-GPU node rank 3 must not get cuda:0 tensors. The meta
// device stands in for "another device" on a machine without GPUs.
TEST(TrainerCheckpoint, OptimizerStateLoadsOntoTheRequestedDevice) {
  torch::manual_seed(5);
  dpt::Model model(dpt::make_builtin_model("mlp", {1, 4, 4, 3}));
  const auto sgd = dpt::OptimizerOptions().name("sgd").lr(0.01).momentum(0.9);
  auto trained = dpt::make_optimizer(model.parameters(), sgd);
  model.forward(torch::rand({5, 1, 4, 4})).sum().backward();
  trained->step();
  const dpt::Bytes saved = dpt::save_optimizer_state(*trained);

  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters()) {
    params.push_back(torch::empty(p.sizes(), p.options().device(torch::kMeta)).requires_grad_());
  }
  auto optimizer = dpt::make_optimizer(params, sgd);
  dpt::load_optimizer_state(*optimizer, saved, "memory");
  ASSERT_EQ(optimizer->state().size(), params.size());
  for (const auto& [key, state] : optimizer->state()) {
    EXPECT_TRUE(static_cast<torch::optim::SGDParamState&>(*state).momentum_buffer().is_meta()) << key;
  }
}

TEST(TrainerCheckpoint, TruncatedAndCorruptFilesAreNamed) {
  auto bytes = dpt::encode_checkpoint(sample_checkpoint(1));
  auto truncated = dpt::Bytes(bytes.begin(), bytes.begin() + bytes.size() / 2);
  auto message = error_of([&] { dpt::decode_checkpoint(truncated, "ckpt/checkpoint-1.dpt"); });
  EXPECT_NE(message.find("ckpt/checkpoint-1.dpt"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  auto flipped = bytes;
  flipped[flipped.size() - 100] ^= 0x5a;
  message = error_of([&] { dpt::decode_checkpoint(flipped, "ckpt/checkpoint-2.dpt"); });
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  EXPECT_NE(message.find("checkpoint-2.dpt"), std::string::npos) << message;

  message = error_of([&] { dpt::decode_checkpoint(dpt::Bytes(40, 'x'), "junk.bin"); });
  EXPECT_NE(message.find("not a dptrain checkpoint"), std::string::npos) << message;
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
