// Trains a small classifier on Fashion-MNIST with dpt::DistributedDataParallel: one process per
// rank, each on its shard of the data (DistributedSampler); gradients are averaged in buckets
// while backward runs.
//
//   scripts/dpt-mpirun -np 2 build/bin/ddp_mnist [epochs=1] [data_dir=/usr/share/datasets/fashion-mnist]
// Without the data files it trains on random images, so the example always runs.
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "dptrain/core/data/distributed_sampler.h"
#include "dptrain/core/data/idx_dataset.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/runtime/runtime.h"

int main(int argc, char** argv) {
  return dpt::run_main("ddp_mnist", [&] {
    const int epochs = argc > 1 ? std::stoi(argv[1]) : 1;
    const std::string data_dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
    dpt::Runtime runtime;  // mpirun/srun/torchrun env or alone; MPI or NCCL
    auto world = runtime.world();
    const torch::Device device = runtime.device();

    torch::Tensor train_x, train_y, test_x, test_y;
    if (dpt::fs::exists(data_dir + "/train-images-idx3-ubyte.gz")) {
      auto train = dpt::load_mnist(data_dir, "train"), test = dpt::load_mnist(data_dir, "test");
      train_x = train.inputs(), train_y = train.targets(), test_x = test.inputs(), test_y = test.targets();
    } else {
      if (world->rank() == 0) std::printf("no data in %s: training on random images\n", data_dir.c_str());
      torch::manual_seed(0);  // the same random data on every rank
      train_x = torch::rand({6000, 1, 28, 28}), train_y = torch::randint(10, {6000});
      test_x = torch::rand({1000, 1, 28, 28}), test_y = torch::randint(10, {1000});
    }

    torch::nn::Sequential net(torch::nn::Flatten(), torch::nn::Linear(784, 256), torch::nn::ReLU(),
                              torch::nn::Linear(256, 10));
    net->to(device);
    dpt::DistributedDataParallel ddp(net, world);  // checks and broadcasts rank 0's weights
    torch::optim::SGD sgd(ddp.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    dpt::DistributedSampler sampler(train_x.size(0), world->rank(), world->size(), /*shuffle=*/true, /*seed=*/1);

    const int64_t batch = 64;  // per rank
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      ddp.train();
      sampler.set_epoch(epoch);
      auto indices = torch::tensor(sampler.indices());
      double loss_sum = 0, exposed_comm = 0;
      int64_t steps = 0;
      for (int64_t begin = 0; begin < indices.size(0); begin += batch) {
        auto index = indices.slice(0, begin, begin + batch);
        auto x = train_x.index_select(0, index).to(device), y = train_y.index_select(0, index).to(device);
        sgd.zero_grad();
        auto loss = torch::cross_entropy_loss(ddp.forward(x), y);
        loss.backward();  // .grad = average over all ranks
        sgd.step();
        loss_sum += loss.item<double>();
        exposed_comm += ddp.last_iteration_stats().exposed_comm_s;
        ++steps;
      }
      ddp.eval();
      torch::NoGradGuard no_grad;  // no collectives in eval forwards
      auto predicted = ddp.forward(test_x.to(device)).argmax(1).cpu();
      const double accuracy = predicted.eq(test_y).to(torch::kDouble).mean().item<double>();
      if (world->rank() == 0) {
        std::printf("epoch %d: rank-0 train loss %.4f, test accuracy %.4f, exposed comm %.1f ms/step (%d ranks)\n",
                    epoch, loss_sum / steps, accuracy, 1e3 * exposed_comm / steps, world->size());
      }
    }
    return 0;
  });
}
