#include "machine_info.h"

#include <sched.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include "dptrain/core/config.h"

#if DPTRAIN_HAVE_MPI
#include <mpi.h>
#endif
#if DPTRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dpt::bench {
namespace {

// The value after "key<spaces>: " of the first matching line of a /proc file; "" when absent.
std::string proc_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string mpi_library() {
#if DPTRAIN_HAVE_MPI
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  std::string text(version, static_cast<size_t>(length));
  auto comma = text.find(',');  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  return comma == std::string::npos ? text : text.substr(0, comma);
#else
  return "none (built without MPI)";
#endif
}

}  // namespace

nlohmann::json machine_info() {
  nlohmann::json info;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  info["hostname"] = host;
  info["cpu_model"] = proc_field("/proc/cpuinfo", "model name");
  info["logical_cores"] = std::thread::hardware_concurrency();
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) info["cores_available"] = CPU_COUNT(&allowed);
  std::string mem = proc_field("/proc/meminfo", "MemTotal");  // "24523456 kB"
  if (!mem.empty()) info["memory_gib"] = std::stod(mem) / (1024.0 * 1024.0);
  info["torch_version"] = TORCH_VERSION;
  info["mpi_library"] = mpi_library();
  info["dptrain_version"] = DPTRAIN_VERSION;
  info["build"] = {{"mpi", bool(DPTRAIN_HAVE_MPI)}, {"cuda", bool(DPTRAIN_HAVE_CUDA)}, {"nccl", bool(DPTRAIN_HAVE_NCCL)}};
  info["cuda_devices"] = static_cast<int>(torch::cuda::device_count());
#if DPTRAIN_HAVE_CUDA
  if (torch::cuda::device_count() > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) info["gpu_model"] = prop.name;
  }
#endif
  // Other processes competing for the cores skew every number; the load says whether they did.
  double load[1] = {0};
  if (getloadavg(load, 1) == 1) info["load_average_1m"] = load[0];
  info["utc_time"] = utc_now();
  return info;
}

}  // namespace dpt::bench
