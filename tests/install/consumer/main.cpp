// Sums every rank's number with the installed dptrain, and checks the answer.
#include <dptrain/core/run_main.h>
#include <dptrain/parallel/runtime/runtime.h>

#include <iostream>

int main() {
  return dpt::run_main("consumer", [] {
    dpt::Runtime runtime;
    auto world = runtime.world();
    auto value = torch::full({4}, static_cast<float>(world->rank() + 1));
    world->allreduce(value, dpt::ReduceOp::Sum);
    const float expected = world->size() * (world->size() + 1) / 2.0f;
    if (!torch::allclose(value, torch::full({4}, expected))) {
      std::cerr << "rank " << world->rank() << ": got " << value << ", expected " << expected << "\n";
      return 1;
    }
    if (world->rank() == 0) std::cout << "consumer: allreduce over " << world->size() << " ranks OK\n";
    return 0;
  });
}
