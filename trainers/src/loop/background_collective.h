// The end of a collective the training loop runs in the background (the stop flag's all-reduce,
// the straggler monitor's all-gather), when its owner goes away with it still in flight.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "dptrain/parallel/comm/work.h"

namespace dpt {

// On a normal exit every rank started this collective and every rank finishes it: waited for.
// On an error exit (a peer died, a timeout) it may never complete, and waiting would hold this rank
// until the communicator's timeout; the communicator may still write into `buffers`, so they are kept
// alive for the rest of a process that is going down. Never throws: a peer's failure at the very end
// is reported by whatever met it first.
void settle_background_collective(const WorkPtr& work, std::vector<torch::Tensor> buffers);

}  // namespace dpt
