#include "gpu_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>

namespace dpt::bench {
namespace {

using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

ProfilerConfig kineto_config() { return ProfilerConfig(ProfilerState::KINETO, /*report_input_shapes=*/false); }
const std::set<ActivityType> kActivities = {ActivityType::CPU, ActivityType::CUDA};

}  // namespace

GpuProfile::GpuProfile() {
  torch::autograd::profiler::prepareProfiler(kineto_config(), kActivities);
  torch::autograd::profiler::enableProfiler(kineto_config(), kActivities);
  recording_ = true;
}

GpuProfile::~GpuProfile() {
  if (recording_) torch::autograd::profiler::disableProfiler();
}

void GpuProfile::save(const std::string& path) {
  if (!recording_) return;
  recording_ = false;
  auto result = torch::autograd::profiler::disableProfiler();
  result->save(path);
}

}  // namespace dpt::bench
