// A Kineto (torch.profiler) trace of CPU ops and GPU kernels, memory copies and NCCL kernels on
// every stream: what shows whether bucket all-reduces overlap backward on a GPU, where host-side
// timestamps cannot (collectives there are asynchronous). Open the file in Perfetto or
// chrome://tracing; benchmarks/trace_overlap.py measures the overlap.
#pragma once

#include <string>

namespace dpt::bench {

class GpuProfile {
 public:
  // Starts recording (CPU and CUDA activities).
  GpuProfile();
  ~GpuProfile();  // stops if still recording, writing nothing
  GpuProfile(const GpuProfile&) = delete;
  GpuProfile& operator=(const GpuProfile&) = delete;

  // Stops and writes the Chrome trace to `path`.
  void save(const std::string& path);

 private:
  bool recording_ = false;
};

}  // namespace dpt::bench
