// MpiScope in a build without MPI (runtime/mpi_scope.h): MPI is never up, and asking for it says
// which build option brings it.
#include "runtime/mpi_scope.h"

#include "dptrain/core/error.h"

namespace dpt::detail {

bool MpiScope::available() { return false; }
bool MpiScope::is_up() { return false; }
void MpiScope::abort_job(int) {}

void MpiScope::broadcast_world(void*, size_t, const std::string& who) {
  DPT_THROW(UnsupportedError, who, ": this build of dptrain has no MPI (DPTRAIN_WITH_MPI=OFF)");
}

MpiScope::MpiScope(const std::string&) {
  DPT_THROW(UnsupportedError, "this build of dptrain has no MPI (DPTRAIN_WITH_MPI=OFF)");
}

MpiScope::~MpiScope() = default;

}  // namespace dpt::detail
