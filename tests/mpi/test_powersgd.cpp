// PowerSGD (dpt::PowerSgd) at every world size the mpi suite runs, against what it must be:
// the plain average before compression starts; exactly the average when that has rank <= r; the
// best rank-r approximation (truncated SVD) once warm start has let the power iteration converge;
// the whole gradient delivered over time with error feedback (and not without it); and through
// DDP, one process's training on the global batch when every rank's gradient is rank one.
#include <gtest/gtest.h>

#include "ddp_test_util.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/comm_hooks/powersgd.h"

namespace dpt::testing::ddp {
namespace {

// One bucket of gradients shaped like `shapes`, fed to the hook as DDP would.
class HookDriver {
 public:
  HookDriver(std::shared_ptr<PowerSgd> powersgd, std::vector<std::vector<int64_t>> shapes)
      : powersgd_(std::move(powersgd)), hook_(powersgd_->comm_hook()) {
    for (const auto& shape : shapes) parameters_.push_back(torch::zeros(shape, test_device()));
  }
  // Reduces this rank's gradients (one per shape); returns what every rank gets back.
  std::vector<torch::Tensor> reduce(const std::vector<torch::Tensor>& gradients) {
    std::vector<torch::Tensor> flat;
    for (const auto& g : gradients) flat.push_back(g.reshape({-1}));
    auto comm = world();
    GradBucket bucket(0, true, torch::cat(flat).to(test_device()), *comm, comm->size(), parameters_);
    hook_(bucket).wait();
    std::vector<torch::Tensor> out;
    for (const auto& g : bucket.gradients()) out.push_back(g.cpu());
    return out;
  }

 private:
  std::shared_ptr<PowerSgd> powersgd_;
  CommHook hook_;
  std::vector<torch::Tensor> parameters_;
};

torch::Tensor average(torch::Tensor local) {
  auto sum = local.to(test_device(), /*non_blocking=*/false, /*copy=*/true);
  world()->allreduce(sum);
  return sum.cpu() / world()->size();
}

torch::Tensor random_on_rank(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1000 * static_cast<uint64_t>(world()->rank()));
  return torch::randn(shape, gen);
}

double relative(const torch::Tensor& a, const torch::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

TEST(PowerSgd, PlainAverageBeforeStartThenCompressed) {
  auto powersgd = std::make_shared<PowerSgd>(PowerSgdOptions().rank(1).start_iteration(2));
  HookDriver driver(powersgd, {{24, 20}, {20}});
  for (int step = 0; step < 3; ++step) {
    auto weight = random_on_rank({24, 20}, step), bias = random_on_rank({20}, 50 + step);
    auto reduced = driver.reduce({weight, bias});
    const double error = relative(reduced[0], average(weight));
    if (step < 2) {
      EXPECT_LT(error, 1e-6) << "step " << step << " is before start_iteration";
    } else {
      EXPECT_GT(error, 1e-2) << "step " << step << ": a rank-1 approximation of a random 24x20 matrix";
    }
    EXPECT_LT(relative(reduced[1], average(bias)), 1e-6) << "vectors are never compressed";
  }
  EXPECT_EQ(powersgd->iteration(), 3);
  EXPECT_NEAR(powersgd->compression_ratio(), (24.0 * 20 + 20) / (24 + 20 + 20), 1e-9);
}

TEST(PowerSgd, ExactWhenTheAverageHasRankAtMostR) {
  const int W = world()->size();
  // Rank W is written as W rank-one updates, rank 10 as one matmul (both paths of the approximation).
  for (int64_t r : {int64_t{W}, int64_t{10}}) {
    auto powersgd = std::make_shared<PowerSgd>(PowerSgdOptions().rank(r).start_iteration(0));
    HookDriver driver(powersgd, {{64, 48}, {2, 2}, {48}});
    for (int step = 0; step < 2; ++step) {
      // Rank one on every rank: the average has rank <= W.
      auto weight = torch::outer(random_on_rank({64}, 10 + step), random_on_rank({48}, 20 + step));
      auto small = random_on_rank({2, 2}, 30 + step), bias = random_on_rank({48}, 40 + step);
      auto reduced = driver.reduce({weight, small, bias});
      // float32 through a QR of P, whose columns may be far from orthogonal: exact to ~1e-4
      // (a rank-(W-1) approximation would miss by tens of percent).
      EXPECT_LT(relative(reduced[0], average(weight)), 5e-4) << "rank " << r << ", step " << step;
      EXPECT_LT(relative(reduced[1], average(small)), 1e-6) << "a 2x2 matrix gains nothing: sent as it is";
      EXPECT_LT(relative(reduced[2], average(bias)), 1e-6);
    }
    EXPECT_GT(powersgd->compression_ratio(), 1.2) << "rank " << r << ": the 64x48 matrix was compressed";
  }
}

// G = U diag(10, 5, 1, 0.5, ...) V^T, the same on every rank.
torch::Tensor matrix_with_spectrum(int64_t n) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto u = std::get<0>(torch::linalg_qr(torch::randn({n, n}, gen)));
  auto v = std::get<0>(torch::linalg_qr(torch::randn({n, n}, gen)));
  auto s = torch::full({n}, 0.5);
  s.narrow(0, 0, 3).copy_(torch::tensor({10.0, 5.0, 1.0}));
  return u.matmul(torch::diag(s)).matmul(v.t());
}

TEST(PowerSgd, WarmStartConvergesToTheBestRankRApproximation) {
  const auto g = matrix_with_spectrum(16);
  auto [u, s, vh] = torch::linalg_svd(g, false);
  const auto best = u.narrow(1, 0, 2).matmul(torch::diag(s.narrow(0, 0, 2))).matmul(vh.narrow(0, 0, 2));
  for (bool warm : {true, false}) {
    auto powersgd = std::make_shared<PowerSgd>(
        PowerSgdOptions().rank(2).start_iteration(0).error_feedback(false).warm_start(warm).seed(3));
    HookDriver driver(powersgd, {{16, 16}});
    torch::Tensor reduced;
    for (int step = 0; step < 30; ++step) reduced = driver.reduce({g})[0];
    if (warm) {
      EXPECT_LT(relative(reduced, best), 1e-4) << "30 steps of power iteration from the kept Q";
    } else {
      EXPECT_GT(relative(reduced, best), 1e-3) << "one step from a random Q each time";
    }
  }
}

TEST(PowerSgd, ErrorFeedbackDeliversTheWholeGradientOverTime) {
  // Each rank sends the same full-rank gradient every step; rank-2 approximations of it.
  const auto g = random_on_rank({16, 16}, 77);
  const auto target = average(g);
  const int steps = 100;
  for (bool feedback : {true, false}) {
    auto powersgd = std::make_shared<PowerSgd>(PowerSgdOptions().rank(2).start_iteration(0).error_feedback(feedback));
    HookDriver driver(powersgd, {{16, 16}});
    auto delivered = torch::zeros_like(g);
    for (int step = 0; step < steps; ++step) delivered += driver.reduce({g})[0];
    const double error = relative(delivered / steps, target);
    if (feedback) {
      EXPECT_LT(error, 0.1) << "what is left out is sent later";
    } else {
      EXPECT_GT(error, 0.3) << "without feedback only the rank-2 part of the gradient arrives";
    }
  }
}

TEST(PowerSgd, DdpWithRankOneGradientsEqualsOneProcess) {
  // One sample per rank: each rank's weight gradient is rank one, so rank W is exact.
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto make = [] {
    torch::manual_seed(11);
    return torch::nn::Linear(32, 32);
  };
  auto net = on_test_device(make()), reference = make();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm);
  auto powersgd = std::make_shared<PowerSgd>(PowerSgdOptions().rank(W).start_iteration(1));
  ddp.register_comm_hook(powersgd->comm_hook());
  for (int step = 0; step < 4; ++step) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(300 + step));
    auto x = torch::randn({W, 32}, gen), y = torch::randn({W, 32}, gen);
    torch::mse_loss(ddp.forward(x.narrow(0, rank, 1).to(test_device())), y.narrow(0, rank, 1).to(test_device()))
        .backward();
    sgd_step(ddp.parameters(), 0.1);
    torch::mse_loss(reference->forward(x), y).backward();
    sgd_step(reference->parameters(), 0.1);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-4);
  expect_changed(ddp.parameters(), initial);
  EXPECT_GT(powersgd->compression_ratio(), 1.5) << "the weight was compressed";
}

TEST(PowerSgd, DdpRanksAgreeAndCompressionChangesTheResult) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto train = [&](bool compress) {
    torch::manual_seed(12);
    auto net = on_test_device(torch::nn::Sequential(torch::nn::Linear(20, 64), torch::nn::ReLU(), torch::nn::Linear(64, 5)));
    DistributedDataParallel ddp(net, comm);
    if (compress) ddp.register_comm_hook(std::make_shared<PowerSgd>(PowerSgdOptions().rank(1).start_iteration(1))->comm_hook());
    for (int step = 0; step < 4; ++step) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(400 + step));
      auto x = torch::randn({8 * W, 20}, gen), y = torch::randn({8 * W, 5}, gen);
      torch::mse_loss(ddp.forward(x.narrow(0, 8 * rank, 8).to(test_device())),
                      y.narrow(0, 8 * rank, 8).to(test_device()))
          .backward();
      sgd_step(ddp.parameters(), 0.1);
    }
    return snapshot(ddp.parameters());
  };
  auto compressed = train(true), exact = train(false);
  double difference = 0;
  for (size_t i = 0; i < compressed.size(); ++i) {
    auto mine = compressed[i].cpu(), first = compressed[i].clone();
    comm->broadcast(first, 0);
    EXPECT_TRUE(torch::equal(mine, first.cpu())) << "parameter " << i << " differs between rank " << rank << " and rank 0";
    difference = std::max(difference, relative(mine, exact[i].cpu()));
  }
  EXPECT_GT(difference, 1e-4) << "rank-1 compression of 64x20 gradients changes the training";
}

TEST(PowerSgd, RejectsBadOptions) {
  EXPECT_THROW(PowerSgd(PowerSgdOptions().rank(0)), InvalidArgumentError);
  EXPECT_THROW(PowerSgd(PowerSgdOptions().start_iteration(-1)), InvalidArgumentError);
  EXPECT_THROW(PowerSgd(PowerSgdOptions().min_compression_rate(0.5)), InvalidArgumentError);
}

}  // namespace
}  // namespace dpt::testing::ddp
