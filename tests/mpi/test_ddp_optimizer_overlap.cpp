// DistributedDataParallel::overlap_optimizer (Note [Optimizer per bucket]): the optimizer stepped
// one bucket at a time inside backward equals the same optimizer stepped once after it - bit for
// bit, and within 1e-5 of one process trained on the global batch - and each bucket is stepped
// before the later buckets are waited for.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "ddp_test_util.h"
#include "dptrain/parallel/ddp/reducer.h"
#include "dptrain/trainers/optim/optim.h"

namespace dpt::testing::ddp {
namespace optimizer_overlap {  // named: the unity build compiles the other DDP tests beside it

constexpr int kSteps = 4;
using MakeOptimizer = std::function<std::unique_ptr<torch::optim::Optimizer>(const std::vector<torch::Tensor>&)>;

// The trainers' optimizers (ForeachSGD for sgd) with two param groups, weight decay on the weights
// only (the language-model recipe), so narrowing each group to a bucket's share is exercised.
MakeOptimizer trainer_optimizer(OptimizerOptions options) {
  return [options](const std::vector<torch::Tensor>& params) {
    std::vector<bool> decays;
    for (const auto& p : params) decays.push_back(p.dim() > 1);
    return make_optimizer(params, options, decays);
  };
}

struct Case {
  std::string name;
  MakeOptimizer make;
};

std::vector<Case> optimizer_cases() {
  return {
      {"sgd nesterov, decay groups", trainer_optimizer(OptimizerOptions().name("sgd").lr(0.05).momentum(0.9).nesterov(true).weight_decay(0.01))},
      {"adam", trainer_optimizer(OptimizerOptions().name("adam").lr(0.01).weight_decay(0.01))},
      {"adamw, decay groups", trainer_optimizer(OptimizerOptions().name("adamw").lr(0.01).weight_decay(0.1))},
      {"libtorch RMSprop", [](const std::vector<torch::Tensor>& p) -> std::unique_ptr<torch::optim::Optimizer> {
         return std::make_unique<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(0.01).momentum(0.5));
       }},
  };
}

// Trains make_mlp() for kSteps with DDP under `options`; with `overlap` the optimizer is stepped
// per bucket inside backward, else once after it. Every other micro-batch is under no_sync when
// `accumulate`. Returns the parameters.
std::vector<torch::Tensor> train(const MakeOptimizer& make, bool overlap, bool accumulate, DdpOptions options) {
  auto comm = world();
  auto net = on_test_device(make_mlp());
  DistributedDataParallel ddp(net, comm, options);
  auto optimizer = make(ddp.parameters());
  if (overlap) ddp.overlap_optimizer(optimizer.get());
  for (int step = 0; step < kSteps; ++step) {
    optimizer->zero_grad();
    if (accumulate) {
      auto guard = ddp.no_sync();
      auto local = global_batch(100 + step, comm->size()).chunk(comm->rank()).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
      EXPECT_FALSE(ddp.optimizer_stepped()) << "a no_sync backward stepped the optimizer";
    }
    auto local = global_batch(step, comm->size()).chunk(comm->rank()).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    EXPECT_EQ(ddp.optimizer_stepped(), overlap) << "step " << step;
    if (!ddp.optimizer_stepped()) optimizer->step();
  }
  return snapshot(ddp.parameters());
}

// One process on the global batch (the accumulated micro-batch's too), the same optimizer.
std::vector<torch::Tensor> reference(const MakeOptimizer& make, bool accumulate) {
  const int W = world()->size();
  auto net = make_mlp();
  auto optimizer = make(net->parameters());
  for (int step = 0; step < kSteps; ++step) {
    optimizer->zero_grad();
    auto batch = global_batch(step, W);
    if (accumulate) {
      torch::mse_loss(net->forward(global_batch(100 + step, W).x), global_batch(100 + step, W).y).backward();
    }
    torch::mse_loss(net->forward(batch.x), batch.y).backward();
    optimizer->step();
  }
  return snapshot(net->parameters());
}

void expect_bitwise_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                          const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << what << ": parameter " << i << " differs by "
                                          << max_relative_error(a[i], b[i]) << " on rank " << world()->rank();
  }
}

// A weight per bucket (with the bias before it): as many per-bucket steps as weights.
DdpOptions tiny_buckets() { return DdpOptions().bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4); }

TEST(OptimizerOverlap, EqualsTheWholeStepForEveryOptimizer) {
  const auto initial = snapshot(make_mlp()->parameters());
  for (const auto& c : optimizer_cases()) {
    SCOPED_TRACE(c.name);
    const auto overlapped = train(c.make, /*overlap=*/true, /*accumulate=*/false, tiny_buckets());
    expect_bitwise_equal(overlapped, train(c.make, false, false, tiny_buckets()), "against the whole step");
    expect_params_near(overlapped, reference(c.make, false), 1e-5);
    expect_changed(overlapped, initial);
  }
}

TEST(OptimizerOverlap, EqualsTheWholeStepWithAccumulationAndDefaultBuckets) {
  const auto make = optimizer_cases()[2].make;  // adamw
  const auto overlapped = train(make, true, /*accumulate=*/true, DdpOptions());
  expect_bitwise_equal(overlapped, train(make, false, true, DdpOptions()), "accumulating, default buckets");
  expect_params_near(overlapped, reference(make, true), 1e-5);
}

TEST(OptimizerOverlap, EqualsTheWholeStepWithoutBucketViewsAndWithACommHook) {
  const auto make = optimizer_cases()[0].make;
  const auto copies = tiny_buckets().gradient_as_bucket_view(false);
  expect_bitwise_equal(train(make, true, false, copies), train(make, false, false, copies), "bucket copies");
  const auto hooked = tiny_buckets().comm_hook(comm_hooks::fp16_compress);
  expect_bitwise_equal(train(make, true, false, hooked), train(make, false, false, hooked), "fp16 compression hook");
}

// An optimizer that logs each step's parameter count next to the comm hook's log of each bucket
// being waited for: bucket b is stepped before bucket b+1 is waited for.
class LoggingSgd final : public torch::optim::SGD {
 public:
  LoggingSgd(std::vector<torch::Tensor> params, std::vector<std::string>& log)
      : torch::optim::SGD(std::move(params), torch::optim::SGDOptions(0.1)), log_(log) {}
  torch::Tensor step(LossClosure closure = nullptr) override {
    log_.push_back("step " + std::to_string(param_groups()[0].params().size()));
    return torch::optim::SGD::step(closure);
  }

 private:
  std::vector<std::string>& log_;
};

TEST(OptimizerOverlap, StepsEachBucketBeforeTheNextIsWaitedFor) {
  auto comm = world();
  std::vector<std::string> log;
  CommHook hook = [&log](GradBucket& bucket) {
    torch::Tensor buffer = bucket.buffer();
    const double divisor = bucket.divisor();
    const size_t index = bucket.index();
    WorkPtr work = bucket.communicator().allreduce_async(buffer);
    return BucketFuture(work, [&log, buffer, divisor, index]() mutable {
      log.push_back("waited " + std::to_string(index));
      return buffer.div_(divisor);
    });
  };
  // A hook keeps the full path at world size 1 too (Note [Nothing to reduce]).
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm, tiny_buckets().comm_hook(hook));
  LoggingSgd optimizer(ddp.parameters(), log);
  ddp.overlap_optimizer(&optimizer);
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  const auto& buckets = ddp.reducer().buckets();
  ASSERT_GE(buckets.size(), 3u);
  std::vector<std::string> expected;
  for (size_t b = 0; b < buckets.size(); ++b) {
    expected.push_back("waited " + std::to_string(b));
    expected.push_back("step " + std::to_string(buckets[b].param_indices.size()));
  }
  EXPECT_EQ(log, expected);
  EXPECT_EQ(optimizer.param_groups()[0].params().size(), ddp.parameters().size()) << "the groups were not restored";
}

TEST(OptimizerOverlap, RefusesWhatCannotStepPerBucket) {
  auto comm = world();
  {
    DistributedDataParallel ddp(on_test_device(make_mlp()), comm, DdpOptions().find_unused_parameters(true));
    torch::optim::SGD sgd(ddp.parameters(), 0.1);
    EXPECT_THROW(ddp.overlap_optimizer(&sgd), UnsupportedError);
  }
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm);
  torch::optim::LBFGS lbfgs(ddp.parameters());
  EXPECT_THROW(ddp.overlap_optimizer(&lbfgs), UnsupportedError);
  auto stranger = torch::zeros({3}, torch::TensorOptions().requires_grad(true));
  torch::optim::SGD foreign({stranger}, 0.1);
  try {
    ddp.overlap_optimizer(&foreign);
    ADD_FAILURE() << "an optimizer holding a parameter DDP does not reduce was accepted";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("would never be stepped"), std::string::npos) << e.what();
  }
  torch::optim::SGD sgd(ddp.parameters(), 0.1);
  ddp.overlap_optimizer(&sgd);
  EXPECT_THROW(ddp.hand_gradient_reduction_to("a sharded optimizer"), UnsupportedError);
  ddp.overlap_optimizer(nullptr);  // off again: the optimizer is the caller's to step
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  EXPECT_FALSE(ddp.optimizer_stepped());
}

}  // namespace optimizer_overlap
}  // namespace dpt::testing::ddp
