#include "tcp_store.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt::detail {

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
  try {
    return c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  } catch (const std::exception& e) {
    std::string message = e.what();
    DPT_THROW(CommunicationError, "rank ", launch.rank, ": second connection to the store at ", launch.master_addr, ":",
              launch.master_port, " failed: ", message.substr(0, message.find('\n')));
  }
}

}  // namespace dpt::detail
