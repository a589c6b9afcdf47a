#include "bench_job.h"

#include "dptrain/core/error.h"
#include "json_output.h"
#include "machine_info.h"

namespace dpt::bench {

BenchJob::BenchJob(const CommonOptions& common, const std::string& backend)
    : threads(apply_threads(common.threads)), common_(common) {
  check_device(common.device);
  RuntimeOptions options;
  options.backend = backend;
  runtime = std::make_unique<Runtime>(options);
  comm = runtime->world();
  rank = comm->rank();
  world_size = comm->size();
  device = common.device == "cuda" ? runtime->device() : torch::Device(torch::kCPU);
  DPT_CHECK(device.type() == (common.device == "cuda" ? torch::kCUDA : torch::kCPU), UnsupportedError, "--device ",
            common.device, ": the runtime's device is ", device.str());
}

nlohmann::json BenchJob::document(const std::string& benchmark) const {
  return {{"benchmark", benchmark},   {"framework", "dptrain"},      {"device", device.str()},
          {"world_size", world_size}, {"threads", to_json(threads)}, {"warmup", common_.warmup},
          {"iters", common_.iters},   {"machine", machine_info()}};
}

void BenchJob::synchronize() const {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

void max_over_ranks(Communicator& comm, std::vector<double>& values) {
  if (comm.size() == 1 || values.empty()) return;
  auto tensor = torch::tensor(values, torch::kFloat64).to(comm.device());
  comm.allreduce(tensor, ReduceOp::Max);
  auto cpu = tensor.cpu();
  values.assign(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
}

std::string rank_file(const std::string& path, int rank) {
  if (rank == 0) return path;
  const auto dot = path.rfind('.');
  const auto slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  const std::string tag = ".rank" + std::to_string(rank);
  return has_extension ? path.substr(0, dot) + tag + path.substr(dot) : path + tag;
}

}  // namespace dpt::bench
