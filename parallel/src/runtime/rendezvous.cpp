#include "runtime/rendezvous.h"

#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "runtime/mpi_scope.h"

namespace dpt::detail {
namespace {

// libtorch's socket code logs every failed connection attempt while it retries, and the final
// failure with its C++ frames (a rank started before rank 0's store, or without it: dozens of
// lines); dptrain says once what failed. Below debug level those logs are silenced while the
// store connects.
class QuietSocketRetries {
 public:
  QuietSocketRetries() : saved_(FLAGS_caffe2_log_level) {
    if (!log::enabled(log::Level::debug)) FLAGS_caffe2_log_level = std::max(saved_, 3);  // 3: fatal only
  }
  ~QuietSocketRetries() { FLAGS_caffe2_log_level = saved_; }

 private:
  int saved_;
};

}  // namespace

c10::intrusive_ptr<c10d::Store> connect_tcp_store(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  DPT_CHECK(!launch.master_addr.empty() && launch.master_port > 0, InvalidArgumentError, "rank ", launch.rank,
            ": a ", launch.world_size, "-rank launch without MPI needs MASTER_ADDR and MASTER_PORT (got '",
            launch.master_addr, "' and ", launch.master_port, ")");
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0;
  options.numWorkers = static_cast<size_t>(launch.world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  QuietSocketRetries quiet;
  try {
    DPT_LOG_DEBUG("rendezvous at {}:{} ({} ranks)", launch.master_addr, launch.master_port, launch.world_size);
    return c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  } catch (const std::exception& e) {
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    DPT_THROW(TimeoutError, "rank ", launch.rank, ": rendezvous at MASTER_ADDR=", launch.master_addr,
              " MASTER_PORT=", launch.master_port, " failed (", message, "); are all ", launch.world_size,
              " ranks started, and is the port free on rank 0's host?");
  }
}

c10::intrusive_ptr<c10d::Store> connect_tcp_store_client(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(launch.master_port);
  options.isServer = false;
  options.waitWorkers = false;
  options.timeout = timeout;
  QuietSocketRetries quiet;
  try {
    return c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  } catch (const std::exception& e) {
    std::string message = e.what();
    DPT_THROW(CommunicationError, "rank ", launch.rank, ": second connection to the store at ", launch.master_addr, ":",
              launch.master_port, " failed: ", message.substr(0, message.find('\n')));
  }
}

c10::intrusive_ptr<c10d::Store> share_from_rank0(const LaunchInfo& launch, std::vector<uint8_t>& bytes,
                                                 const std::string& key, std::chrono::milliseconds timeout,
                                                 const std::string& who) {
  if (launch.world_size <= 1) return {};
  if (MpiScope::is_up()) {
    MpiScope::broadcast_world(bytes.data(), bytes.size(), who);
    return {};
  }
  auto store = connect_tcp_store(launch, timeout);
  if (launch.rank == 0) {
    store->set(key, bytes);
  } else {
    auto theirs = store->get(key);
    DPT_CHECK(theirs.size() == bytes.size(), CommunicationError, who, ": ", key, " from rank 0 has ", theirs.size(),
              " bytes, expected ", bytes.size());
    bytes = std::move(theirs);
  }
  return store;
}

}  // namespace dpt::detail
