#include "loop/background_collective.h"

#include <exception>
#include <mutex>

namespace dpt {

void settle_background_collective(const WorkPtr& work, std::vector<torch::Tensor> buffers) {
  if (!work) return;
  if (std::uncaught_exceptions() == 0) {
    try {
      work->wait();
      return;
    } catch (const std::exception&) {
      // Fall through: the collective failed, its buffers may still be in the communicator's hands.
    }
  }
  static std::mutex mutex;
  static auto* abandoned = new std::vector<torch::Tensor>();  // never destroyed: outlives every collective
  std::lock_guard<std::mutex> lock(mutex);
  for (auto& buffer : buffers) abandoned->push_back(std::move(buffer));
}

}  // namespace dpt
