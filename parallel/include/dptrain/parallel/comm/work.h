// A handle on an asynchronous collective.
#pragma once

#include <chrono>
#include <memory>

namespace dpt {

class Work {
 public:
  virtual ~Work() = default;

  // Blocks until the collective has finished and its output may be read by the caller (for CUDA
  // tensors: work queued on the caller's current stream after wait() sees the result). Rethrows
  // the collective's error; throws TimeoutError when the communicator's timeout passes first.
  virtual void wait() = 0;

  // Non-blocking; true once wait() would return (or throw) without blocking.
  virtual bool is_completed() = 0;
};

using WorkPtr = std::shared_ptr<Work>;

// A Work that is already done: for world size 1 and empty tensors.
class CompletedWork final : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

}  // namespace dpt
