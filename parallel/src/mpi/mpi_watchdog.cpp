#include "mpi/mpi_watchdog.h"

#include <array>

#include "dptrain/core/logging.h"

namespace dpt::detail {
namespace {

constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
constexpr int kAnswerBytes = 4096;
constexpr auto kPoll = std::chrono::milliseconds(50);

}  // namespace

MpiWatchdog::MpiWatchdog(MPI_Comm comm, std::shared_ptr<ProgressThread> owner) : owner_(std::move(owner)) {
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  thread_ = std::thread([this] { serve(); });
}

std::string MpiWatchdog::explain_late() { return explain_hang(rank_, gather(std::chrono::seconds(2))); }

MpiWatchdog::~MpiWatchdog() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && !owner_->broken()) MPI_Comm_free(&comm_);
}

void MpiWatchdog::serve() {
  // MPI_Iprobe rather than a standing wildcard receive: nothing of this thread sits in MPI's
  // matching queues between queries, and it enters MPI once per poll only.
  while (!stopping_) {
    int arrived = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_, &arrived, &status) != MPI_SUCCESS) break;
    if (!arrived) {
      std::this_thread::sleep_for(kPoll);
      continue;
    }
    char query = 0;
    MPI_Recv(&query, 1, MPI_CHAR, status.MPI_SOURCE, kQueryTag, comm_, MPI_STATUS_IGNORE);
    std::string answer = owner_->recorder().position().encode();
    answer.resize(std::min<size_t>(answer.size(), kAnswerBytes));
    MPI_Send(answer.data(), static_cast<int>(answer.size()), MPI_CHAR, status.MPI_SOURCE, kAnswerTag, comm_);
  }
}

std::vector<std::pair<bool, FlightPosition>> MpiWatchdog::gather(std::chrono::milliseconds patience) {
  std::vector<std::pair<bool, FlightPosition>> positions(static_cast<size_t>(size_));
  positions[static_cast<size_t>(rank_)] = {true, owner_->recorder().position()};
  std::vector<std::array<char, kAnswerBytes>> answers(static_cast<size_t>(size_));
  std::vector<MPI_Request> receives(static_cast<size_t>(size_), MPI_REQUEST_NULL);
  static char query = 'q';
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    MPI_Irecv(answers[peer].data(), kAnswerBytes, MPI_CHAR, peer, kAnswerTag, comm_, &receives[peer]);
    MPI_Request send = MPI_REQUEST_NULL;
    MPI_Isend(&query, 1, MPI_CHAR, peer, kQueryTag, comm_, &send);
    MPI_Request_free(&send);  // one byte, sent eagerly; a dead peer must not hold us here
  }
  const auto deadline = std::chrono::steady_clock::now() + patience;
  int pending = size_ - 1;
  while (pending > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int peer = 0; peer < size_; ++peer) {
      if (receives[peer] == MPI_REQUEST_NULL) continue;
      int arrived = 0;
      MPI_Status status;
      MPI_Test(&receives[peer], &arrived, &status);
      if (!arrived) continue;
      int bytes = 0;
      MPI_Get_count(&status, MPI_CHAR, &bytes);
      positions[peer] = {true, FlightPosition::decode(std::string(answers[peer].data(), static_cast<size_t>(bytes)))};
      --pending;
    }
    if (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& receive : receives) {
    if (receive == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&receive);
    MPI_Request_free(&receive);
  }
  return positions;
}

}  // namespace dpt::detail
