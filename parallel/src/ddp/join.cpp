#include "dptrain/parallel/ddp/join.h"

#include <exception>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "ddp_impl.h"

namespace dpt {

Join::Join(DistributedDataParallel& ddp, JoinOptions options) : ddp_(&ddp), options_(options) {
  auto& impl = *ddp_->impl_;
  DPT_CHECK(!impl.join_active, InvalidArgumentError, "a Join is already active on this DistributedDataParallel");
  if (!options_.enable()) {
    finished_ = true;
    return;
  }
  DPT_CHECK(impl.gradients_reduced_by.empty() || options_.throw_on_early_termination(), UnsupportedError,
            "Join: the gradients of this DistributedDataParallel are reduced by ", impl.gradients_reduced_by,
            ", whose collectives a rank out of batches cannot shadow; use "
            "JoinOptions().throw_on_early_termination(true) (every rank stops with a DataError instead)");
  impl.join_active = true;
  impl.join_options = options_;
  impl.active_count = impl.comm->size();
  impl.authoritative_rank = 0;
  impl.last_authoritative_rank = 0;
}

Join::~Join() {
  if (finished_) return;
  if (std::uncaught_exceptions() > 0) {
    ddp_->impl_->join_active = false;
    return;
  }
  try {
    finish();
  } catch (const std::exception& e) {
    DPT_LOG_ERROR("Join: {}", e.what());
  }
}

void Join::finish() {
  if (finished_) return;
  finished_ = true;
  auto& impl = *ddp_->impl_;
  struct Deactivate {
    DistributedDataParallel::Impl* impl;
    ~Deactivate() { impl->join_active = false; }
  } deactivate{&impl};
  int64_t shadowed = 0;
  for (;;) {
    const auto codes = impl.join_round(0);
    if (impl.active_count == 0) break;
    DPT_CHECK(!options_.throw_on_early_termination(), DataError, "uneven inputs: rank(s) ",
              DistributedDataParallel::Impl::finished_ranks_text(codes),
              " ran out of batches (Join with throw_on_early_termination; thrown on every rank)");
    impl.shadow_iteration(codes);
    ++shadowed;
  }
  impl.sync_final_model();
  if (shadowed > 0 && impl.debug >= DebugLevel::Info) {
    DPT_LOG_INFO("Join: rank {} shadowed {} iterations of ranks with more batches", impl.comm->rank(), shadowed);
  }
}

}  // namespace dpt
