// Every rank stops at the same step when any rank was asked to stop (dpt::StopRequest: SIGTERM,
// SIGINT, SIGUSR1), without a blocking round trip per step.
//
// A scheduler signals every rank, but not at the same instant: one rank may see it before step k
// and another after. At each step boundary every rank starts a small non-blocking all-reduce
// (max) of its own flag; the result is read at a later boundary, by when it is long done, so the
// decision lags the signal by one step (two on a GPU, where the result is copied to the host
// behind the next step's kernels instead of stalling them). All ranks read the same result at the
// same boundary: the same decision everywhere.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

class StopAgreement {
 public:
  explicit StopAgreement(CommunicatorPtr world);
  ~StopAgreement();
  // At a step boundary (every rank, every step): true when the job is to stop now.
  bool stop_now();

 private:
  CommunicatorPtr world_;
  torch::Tensor flag_;           // on the communicator's device
  torch::Tensor host_;           // the reduced flag, copied to the host (GPU only)
  WorkPtr reduction_;            // the all-reduce started at the last boundary
  std::optional<c10::Event> copied_;  // the copy to host_ was done (GPU only)
};

}  // namespace dpt
