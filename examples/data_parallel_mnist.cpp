// Trains a small classifier on Fashion-MNIST with dpt::DataParallel: one process, every visible
// GPU (or two CPU replicas on a machine without one). The optimizer is built on the original
// model, as without DataParallel; backward fills its gradients.
//
//   data_parallel_mnist [epochs=1] [data_dir=/usr/share/datasets/fashion-mnist]
// Without the data files it trains on random images, so the example always runs.
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "dptrain/core/data/idx_dataset.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/data_parallel/data_parallel.h"

int main(int argc, char** argv) {
  return dpt::run_main("data_parallel_mnist", [&] {
    const int epochs = argc > 1 ? std::stoi(argv[1]) : 1;
    const std::string data_dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";

    std::vector<torch::Device> devices;
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
      devices.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
    if (devices.empty()) devices = {torch::kCPU, torch::kCPU};

    torch::Tensor train_x, train_y, test_x, test_y;
    if (dpt::fs::exists(data_dir + "/train-images-idx3-ubyte.gz")) {
      auto train = dpt::load_mnist(data_dir, "train");
      auto test = dpt::load_mnist(data_dir, "test");
      train_x = train.inputs(), train_y = train.targets(), test_x = test.inputs(), test_y = test.targets();
    } else {
      std::printf("no data in %s: training on random images\n", data_dir.c_str());
      train_x = torch::rand({6000, 1, 28, 28}), train_y = torch::randint(10, {6000});
      test_x = torch::rand({1000, 1, 28, 28}), test_y = torch::randint(10, {1000});
    }

    dpt::Model model(torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(784, 256), torch::nn::ReLU(),
                                           torch::nn::Linear(256, 10)));
    model.to(devices.front());             // the original lives on devices[0]
    dpt::DataParallel dp(model, devices);  // replicas on the other devices, made once
    torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    std::printf("DataParallel over %zu device(s), first %s\n", devices.size(), devices.front().str().c_str());

    const int64_t batch = 256;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      dp.train();
      auto order = torch::randperm(train_x.size(0));
      double loss_sum = 0;
      int64_t steps = 0;
      for (int64_t begin = 0; begin < train_x.size(0); begin += batch) {
        auto index = order.slice(0, begin, begin + batch);
        auto x = train_x.index_select(0, index).to(devices.front());
        auto y = train_y.index_select(0, index).to(devices.front());
        auto loss = torch::cross_entropy_loss(dp.forward(x), y);  // batch split over the replicas
        sgd.zero_grad();
        loss.backward();  // gradients summed into `model`
        sgd.step();
        loss_sum += loss.item<double>();
        ++steps;
      }
      dp.eval();
      torch::NoGradGuard no_grad;
      auto predicted = dp.forward(test_x.to(devices.front())).argmax(1).cpu();
      const double accuracy = predicted.eq(test_y).to(torch::kDouble).mean().item<double>();
      std::printf("epoch %d: train loss %.4f, test accuracy %.4f\n", epoch, loss_sum / steps, accuracy);
    }
    return 0;
  });
}
