// DDP on N ranks == one process trained on the concatenated global batch.
#include <gtest/gtest.h>

#include <set>

#include "ddp_test_util.h"
#include "dptrain/parallel/ddp/reducer.h"

namespace dpt::testing::ddp {
namespace {

constexpr int kSteps = 3;
constexpr double kLr = 0.1;

// Trains an MLP with DDP under `options` and the reference on the global batch; compares.
void check_mlp_equivalence(DdpOptions options, double tolerance, size_t* buckets_out = nullptr) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm, options);
  for (int step = 0; step < kSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sgd_step(ddp.parameters(), kLr);
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), tolerance);
  expect_changed(ddp.parameters(), initial);
  if (buckets_out) *buckets_out = ddp.reducer().buckets().size();
}

TEST(DdpEquivalence, Mlp) { check_mlp_equivalence(DdpOptions(), 1e-5); }

TEST(DdpEquivalence, TinyBucketsOneBucketPerParameter) {
  size_t buckets = 0;
  check_mlp_equivalence(DdpOptions().bucket_cap_mb(1e-6).first_bucket_cap_mb(1e-6), 1e-5, &buckets);
  EXPECT_EQ(buckets, make_mlp()->parameters().size());  // after the rebuild too
}

TEST(DdpEquivalence, DefaultCapsPutTheMlpInOneBucket) {
  size_t buckets = 0;
  check_mlp_equivalence(DdpOptions(), 1e-5, &buckets);
  EXPECT_EQ(buckets, 1u);
}

TEST(DdpEquivalence, GradientAsBucketView) {
  check_mlp_equivalence(DdpOptions().gradient_as_bucket_view(true).bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4),
                        1e-5);
}

bool every_grad_views_a_bucket(const DistributedDataParallel& ddp) {
  for (const auto& param : ddp.parameters()) {
    bool shares = false;
    for (const auto& bucket : ddp.reducer().buckets()) shares = shares || param.grad().is_alias_of(bucket.contents);
    if (!shares) return false;
  }
  return true;
}

TEST(DdpEquivalence, GradientAsBucketViewSharesStorage) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "one rank reduces nothing and has no buckets (test_ddp_group_of_one.cpp)";
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm, DdpOptions().gradient_as_bucket_view(true));
  for (int step = 0; step < 2; ++step) {  // the second step runs on the rebuilt buckets
    auto local = global_batch(step, comm->size()).chunk(comm->rank()).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    EXPECT_TRUE(every_grad_views_a_bucket(ddp)) << "step " << step;
    sgd_step(ddp.parameters(), kLr);
  }
  // Without the option the gradients are separate tensors.
  DistributedDataParallel copying(on_test_device(make_mlp()), comm, DdpOptions().gradient_as_bucket_view(false));
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(copying.forward(local.x), local.y).backward();
  EXPECT_FALSE(copying.parameters()[0].grad().is_alias_of(copying.reducer().buckets()[0].contents));
}

// libtorch's own optimizers on bucket views: Optimizer::zero_grad detaches every .grad in place,
// which an autograd view of the bucket would refuse; zeroing in place (set_to_none false) keeps
// the views, so later backwards accumulate straight into the buckets.
TEST(DdpEquivalence, LibtorchOptimizerZeroGradKeepsTheBucketViews) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "one rank reduces nothing and has no buckets (test_ddp_group_of_one.cpp)";
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm);  // gradient_as_bucket_view by default
  torch::optim::SGD optimizer(ddp.parameters(), torch::optim::SGDOptions(kLr).momentum(0.9));
  torch::optim::SGD reference_optimizer(reference->parameters(), torch::optim::SGDOptions(kLr).momentum(0.9));
  for (int step = 0; step < kSteps; ++step) {
    optimizer.zero_grad(/*set_to_none=*/false);
    auto local = global_batch(step, comm->size()).chunk(comm->rank()).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    EXPECT_TRUE(every_grad_views_a_bucket(ddp)) << "step " << step;
    optimizer.step();
    reference_optimizer.zero_grad(false);
    auto whole = global_batch(step, comm->size());
    torch::mse_loss(reference->forward(whole.x), whole.y).backward();
    reference_optimizer.step();
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

// bucket_cap_auto: the first backward warms up, the second is timed, the third forward rebuilds
// with root's chosen cap; the training still equals the reference, and every rank holds the same
// buckets (a rank choosing alone would issue different collectives and hang).
TEST(DdpEquivalence, AutoBucketCapGivesEveryRankTheSameBuckets) {
  auto comm = world();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm, DdpOptions().bucket_cap_auto(true));
  for (int step = 0; step < 4; ++step) {
    auto batch = global_batch(step, comm->size());
    torch::mse_loss(ddp.forward(batch.chunk(comm->rank()).to_test_device().x),
                    batch.chunk(comm->rank()).to_test_device().y)
        .backward();
    sgd_step(ddp.parameters(), kLr);
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  const auto& choice = ddp.reducer().bucket_cap_choice();
  if (comm->size() == 1) {
    EXPECT_FALSE(choice.has_value()) << "one rank reduces nothing: nothing to tune";
    return;
  }
  const std::string layout = ddp.reducer().bucket_layout() + std::to_string(ddp.reducer().bucket_cap_bytes());
  for (const auto& other : comm->allgather_bytes(Bytes(layout.begin(), layout.end()))) {
    EXPECT_EQ(std::string(other.begin(), other.end()), layout);
  }
  EXPECT_EQ(choice.has_value(), comm->rank() == 0);
  if (choice) {
    EXPECT_EQ(choice->cap_bytes, ddp.reducer().bucket_cap_bytes());
    EXPECT_GT(choice->backward_s, 0);
    EXPECT_GE(choice->trials.size(), 2u) << choice->summary();
  }
}

TEST(DdpEquivalence, Fp16CompressionHook) {
  check_mlp_equivalence(DdpOptions().comm_hook(comm_hooks::fp16_compress), 2e-3);
}

TEST(DdpEquivalence, Bf16CompressionHook) {
  check_mlp_equivalence(DdpOptions().comm_hook(comm_hooks::bf16_compress), 2e-2);
}

TEST(DdpEquivalence, UserCommHookSeesEveryBucketInOrder) {
  auto comm = world();
  std::vector<size_t> seen;
  CommHook hook = [&seen](GradBucket& bucket) {
    seen.push_back(bucket.index());
    torch::Tensor buffer = bucket.buffer();
    WorkPtr work = bucket.communicator().allreduce_async(buffer);
    const double divisor = bucket.divisor();
    return BucketFuture(work, [buffer, divisor]() mutable { return buffer.div_(divisor); });
  };
  check_mlp_equivalence(DdpOptions().comm_hook(hook).bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4), 1e-5);
  ASSERT_FALSE(seen.empty());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i % (seen.size() / kSteps));
}

TEST(DdpEquivalence, NoSyncAccumulatesTwoMicroBatches) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm);
  for (int step = 0; step < kSteps; ++step) {
    auto first = global_batch(2 * step, W), second = global_batch(2 * step + 1, W);
    {
      auto guard = ddp.no_sync();
      auto local = first.chunk(rank).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
      // Not synchronized: the gradient is this rank's own (differs between ranks when W > 1).
    }
    auto local = second.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sgd_step(ddp.parameters(), kLr);
    (torch::mse_loss(reference->forward(first.x), first.y) + torch::mse_loss(reference->forward(second.x), second.y))
        .backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

// Unused branch: branch b is used only by rank 1 (so it is locally unused on the others and, at
// world size 1, globally unused: its .grad stays undefined and it does not move).
struct TwoBranchImpl : torch::nn::Module {
  TwoBranchImpl() {
    torch::manual_seed(11);
    trunk = register_module("trunk", torch::nn::Linear(kIn, 8));
    a = register_module("a", torch::nn::Linear(8, kOut));
    b = register_module("b", torch::nn::Linear(8, kOut));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_b) {
    auto h = torch::tanh(trunk->forward(x));
    return use_b ? a->forward(h) + b->forward(h) : a->forward(h);
  }
  torch::nn::Linear trunk{nullptr}, a{nullptr}, b{nullptr};
};

TEST(DdpEquivalence, FindUnusedParametersWithRankDependentBranch) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(std::make_shared<TwoBranchImpl>());
  auto reference = std::make_shared<TwoBranchImpl>();
  auto initial_b = reference->b->weight.detach().clone();
  const bool use_b = rank == 1;
  Model model(net, [use_b](torch::nn::Module& m, const torch::Tensor& x) {
    return static_cast<TwoBranchImpl&>(m).forward(x, use_b);
  });
  DistributedDataParallel ddp(model, comm, DdpOptions().find_unused_parameters(true));
  for (int step = 0; step < kSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sgd_step(ddp.parameters(), kLr);
    torch::Tensor loss = torch::zeros({});
    for (int r = 0; r < W; ++r) {
      auto chunk = batch.chunk(r);
      loss = loss + torch::mse_loss(reference->forward(chunk.x, r == 1), chunk.y) / W;
    }
    loss.backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  if (W == 1) {
    EXPECT_FALSE(net->b->weight.grad().defined()) << "a parameter no rank used keeps its .grad";
    EXPECT_LT(max_relative_error(net->b->weight.cpu(), initial_b), 1e-12);
  } else {
    EXPECT_GT(max_relative_error(net->b->weight.cpu(), initial_b), 1e-5);
  }
}

// BatchNorm: PyTorch DDP normalises with each rank's own batch statistics (no SyncBN). The
// matching single-process reference runs the global batch chunk by chunk (one chunk per rank, so
// each chunk is normalised with its own statistics) and averages the chunks' losses.
TEST(DdpEquivalence, CnnWithBatchNormMatchesPerRankStatisticsReference) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto make_cnn = [] {
    torch::manual_seed(5);
    return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)),
                                 torch::nn::BatchNorm2d(4), torch::nn::ReLU(), torch::nn::Flatten(),
                                 torch::nn::Linear(4 * 5 * 5, kOut));
  };
  auto net = on_test_device(make_cnn());
  auto reference = make_cnn();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm);
  for (int step = 0; step < kSteps; ++step) {
    auto gen = torch::make_generator<torch::CPUGeneratorImpl>(2000 + step);
    auto x = torch::randn({W * kLocalBatch, 2, 5, 5}, gen), y = torch::randn({W * kLocalBatch, kOut}, gen);
    torch::mse_loss(ddp.forward(x.narrow(0, rank * kLocalBatch, kLocalBatch).to(test_device())),
                    y.narrow(0, rank * kLocalBatch, kLocalBatch).to(test_device()))
        .backward();
    sgd_step(ddp.parameters(), kLr);
    torch::Tensor loss = torch::zeros({});
    for (int r = 0; r < W; ++r) {
      loss = loss + torch::mse_loss(reference->forward(x.narrow(0, r * kLocalBatch, kLocalBatch)),
                                    y.narrow(0, r * kLocalBatch, kLocalBatch)) / W;
    }
    loss.backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  expect_changed(ddp.parameters(), initial);
  // broadcast_buffers: a forward with grad enabled copies rank 0's running statistics everywhere
  // (eval mode, so this forward does not update them again).
  ddp.eval();
  ddp.forward(torch::zeros({1, 2, 5, 5}, test_device()));
  for (auto& [name, buffer] : ddp.model().named_buffers()) {
    auto from_root = comm->broadcast_tensor(buffer, 0);
    EXPECT_TRUE(torch::equal(buffer, from_root)) << name << " on rank " << rank;
  }
}

TEST(DdpEquivalence, TorchScriptModule) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto make_script = [] {
    torch::manual_seed(3);
    torch::jit::Module m("TinyNet");
    m.register_parameter("w1", (torch::randn({kIn, 9}) * 0.3).requires_grad_(), false);
    m.register_parameter("b1", torch::zeros({9}).requires_grad_(), false);
    m.register_parameter("w2", (torch::randn({9, kOut}) * 0.3).requires_grad_(), false);
    m.define(R"(
      def forward(self, x):
          return torch.tanh(x.mm(self.w1) + self.b1).mm(self.w2)
    )");
    return m;
  };
  Model reference(make_script());
  auto initial = snapshot(reference.parameters());
  auto script = make_script();
  script.to(test_device());
  DistributedDataParallel ddp(script, comm);
  ASSERT_EQ(ddp.parameters().size(), 3u);
  for (int step = 0; step < kSteps + 2; ++step) {  // past the profiling runs of the JIT executor
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    EXPECT_EQ(ddp.last_iteration_stats().iteration, step + 1) << "the hooks did not fire for TorchScript";
    sgd_step(ddp.parameters(), kLr);
    torch::mse_loss(reference.forward(batch.x), batch.y).backward();
    sgd_step(reference.parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference.parameters(), 1e-5);
  expect_changed(ddp.parameters(), initial);
}

TEST(DdpEquivalence, StatsAndTraceEvents) {
  auto comm = world();
  std::vector<TraceEvent> events;
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm,
                              DdpOptions().bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4));
  ddp.set_trace_recorder([&events](const TraceEvent& e) { events.push_back(e); });
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  auto stats = ddp.last_iteration_stats();
  EXPECT_EQ(stats.iteration, 1);
  EXPECT_GT(stats.forward_s, 0);
  EXPECT_GT(stats.backward_s, 0);
  EXPECT_GE(stats.exposed_comm_s, 0);
  EXPECT_EQ(stats.num_buckets, ddp.reducer().buckets().size());
  size_t allreduces = 0, forwards = 0, backwards = 0;
  for (const auto& e : events) {
    EXPECT_GE(e.duration_us, 0) << e.name;
    allreduces += e.name.rfind("allreduce bucket", 0) == 0;
    forwards += e.name == "forward";
    backwards += e.name == "backward";
  }
  // One rank reduces nothing (Note [Nothing to reduce]): no bucket goes out.
  EXPECT_EQ(allreduces, comm->size() == 1 ? 0u : ddp.reducer().buckets().size());
  EXPECT_EQ(forwards, 1u);
  EXPECT_EQ(backwards, 1u);
}

// Note [TorchScript training runs the unoptimized plan]: through DDP, a scripted model's parameters
// get their gradients from separate autograd nodes, one op at a time, so buckets fill and launch
// while backward goes on - also for a model whose executor already built its optimized plan in
// evaluation, which would feed every parameter from one DifferentiableGraph node at the very end.
TEST(DdpEquivalence, ScriptedModelGradientsComeFromSeparateNodes) {
  auto comm = world();
  torch::manual_seed(3);
  torch::jit::Module script("Net");
  script.register_attribute("training", c10::BoolType::get(), true);
  script.register_parameter("w1", (torch::randn({kIn, 9}) * 0.3).requires_grad_(), false);
  script.register_parameter("w2", (torch::randn({9, 9}) * 0.3).requires_grad_(), false);
  script.register_parameter("w3", (torch::randn({9, kOut}) * 0.3).requires_grad_(), false);
  script.define(R"(
    def forward(self, x):
        h = torch.tanh(x.mm(self.w1))
        h = torch.tanh(h.mm(self.w2) + 1.0)
        return h.mm(self.w3)
  )");
  script.to(test_device());
  Model model(script);
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  model.eval();
  for (int run = 0; run < 20; ++run) model.forward(local.x);  // the optimized plan exists now
  DistributedDataParallel ddp(model, comm, DdpOptions().bucket_cap_mb(1e-6).first_bucket_cap_mb(1e-6));
  ddp.train();
  for (int step = 0; step < 4; ++step) {
    auto loss = torch::mse_loss(ddp.forward(local.x), local.y);
    // Which autograd node feeds each parameter's AccumulateGrad.
    std::set<const torch::autograd::Node*> producers, seen;
    std::vector<torch::autograd::Node*> stack = {loss.grad_fn().get()};
    size_t accumulators = 0;
    while (!stack.empty()) {
      auto* node = stack.back();
      stack.pop_back();
      if (!node || !seen.insert(node).second) continue;
      EXPECT_EQ(node->name().find("DifferentiableGraph"), std::string::npos) << "step " << step;
      for (const auto& edge : node->next_edges()) {
        if (!edge.function) continue;
        if (edge.function->name().find("AccumulateGrad") != std::string::npos) {
          ++accumulators;
          producers.insert(node);
        } else {
          stack.push_back(edge.function.get());
        }
      }
    }
    EXPECT_EQ(accumulators, 3u) << "step " << step;
    EXPECT_EQ(producers.size(), 3u) << "step " << step << ": the parameters' gradients came from "
                                    << producers.size() << " node(s)";
    loss.backward();
    sgd_step(ddp.parameters(), kLr);
  }
  EXPECT_EQ(ddp.last_iteration_stats().iteration, 4);
}

}  // namespace
}  // namespace dpt::testing::ddp
