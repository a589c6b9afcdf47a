#include "dptrain/parallel/c10d/process_group.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <utility>
#include <vector>

#include "dptrain/core/error.h"

namespace dpt {

// Note [c10d groups over a Communicator]
// libtorch's c10d ops (what AOTInductor's generated code calls for a functional collective) run
// ProcessGroup -> Backend -> Work: the Backend below turns each call into the Communicator's
// asynchronous collective and its Work into c10d's, whose wait() is the Communicator's (a timeout
// or a dead peer is the Communicator's error, as for every other collective). The op registers
// the Work against its output tensor and wait_tensor waits on it, so a compiled program can
// launch a gradient's all-reduce as soon as the gradient exists and wait for it at its end.
// Only what the functional collectives call is implemented; everything else is c10d's default
// ("does not support"), one clear error naming the backend. Over one rank nothing travels: every
// collective's result is its input (copied where input and output differ), done at once, as
// DDP's group of one (Note [Nothing to reduce]); a package that reduces its gradients costs
// nothing at world size 1.
namespace {

ReduceOp reduce_op_of(const c10d::ReduceOp& op) {
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return ReduceOp::Sum;
    case c10d::ReduceOp::AVG: return ReduceOp::Avg;
    case c10d::ReduceOp::MIN: return ReduceOp::Min;
    case c10d::ReduceOp::MAX: return ReduceOp::Max;
    case c10d::ReduceOp::PRODUCT: return ReduceOp::Product;
    default: break;
  }
  DPT_THROW(UnsupportedError, "dptrain's c10d backend: reduce op ", static_cast<int>(op.op_),
           " (bitwise or premul_sum) is not one of sum, avg, min, max, product");
}

// One c10d Work over the Communicator's Works of one call (several for the coalesced forms).
class CommunicatorWork : public c10d::Work {
 public:
  CommunicatorWork(std::vector<WorkPtr> works, std::vector<at::Tensor> outputs, c10d::OpType type)
      : c10d::Work(-1, type), works_(std::move(works)), outputs_(std::move(outputs)) {}

  bool isCompleted() override {
    for (auto& work : works_) {
      if (!work->is_completed()) return false;
    }
    return true;
  }
  bool wait(std::chrono::milliseconds /*timeout: the Communicator's own applies*/) override {
    for (auto& work : works_) work->wait();
    return true;
  }
  std::vector<at::Tensor> result() override { return outputs_; }

 private:
  std::vector<WorkPtr> works_;
  std::vector<at::Tensor> outputs_;
};

WorkPtr done() { return std::make_shared<CompletedWork>(); }

c10::intrusive_ptr<c10d::Work> make_work(std::vector<WorkPtr> works, std::vector<at::Tensor> outputs,
                                         c10d::OpType type) {
  return c10::make_intrusive<CommunicatorWork>(std::move(works), std::move(outputs), type);
}

class CommunicatorBackend : public c10d::Backend {
 public:
  explicit CommunicatorBackend(std::shared_ptr<Communicator> comm)
      : c10d::Backend(comm->rank(), comm->size()), comm_(std::move(comm)) {}

  const std::string getBackendName() const override { return "dptrain"; }

  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override {
    std::vector<WorkPtr> works;
    const ReduceOp op = reduce_op_of(opts.reduceOp);
    for (auto& tensor : tensors) works.push_back(alone() ? done() : comm_->allreduce_async(tensor, op));
    return make_work(std::move(works), tensors, c10d::OpType::ALLREDUCE);
  }

  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                     const c10d::AllreduceCoalescedOptions& opts) override {
    const ReduceOp op = reduce_op_of(opts.reduceOp);
    return make_work({alone() ? done() : comm_->allreduce_coalesced_async(tensors, op)}, tensors,
                     c10d::OpType::ALLREDUCE_COALESCED);
  }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override {
    std::vector<WorkPtr> works;
    for (auto& tensor : tensors) {
      works.push_back(alone() ? done() : comm_->broadcast_async(tensor, static_cast<int>(opts.rootRank)));
    }
    return make_work(std::move(works), tensors, c10d::OpType::BROADCAST);
  }

  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions&) override {
    return make_work({gather(input, output)}, {output}, c10d::OpType::_ALLGATHER_BASE);
  }

  c10::intrusive_ptr<c10d::Work> allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::AllgatherOptions&) override {
    std::vector<WorkPtr> works;
    for (size_t i = 0; i < inputs.size(); ++i) works.push_back(gather(inputs[i], outputs[i]));
    return make_work(std::move(works), outputs, c10d::OpType::COALESCED);
  }

  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override {
    return make_work({scatter(input, output, reduce_op_of(opts.reduceOp))}, {output},
                     c10d::OpType::_REDUCE_SCATTER_BASE);
  }

  c10::intrusive_ptr<c10d::Work> reduce_scatter_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::ReduceScatterOptions& opts) override {
    std::vector<WorkPtr> works;
    for (size_t i = 0; i < inputs.size(); ++i) {
      works.push_back(scatter(inputs[i], outputs[i], reduce_op_of(opts.reduceOp)));
    }
    return make_work(std::move(works), outputs, c10d::OpType::COALESCED);
  }

  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions&) override {
    return make_work({alone() ? done() : comm_->barrier_async()}, {}, c10d::OpType::BARRIER);
  }

 private:
  bool alone() const { return comm_->size() == 1; }
  WorkPtr gather(at::Tensor& input, at::Tensor& output) {
    if (!alone()) return comm_->allgather_async(input, output);
    output.view_as(input).copy_(input);
    return done();
  }
  WorkPtr scatter(at::Tensor& input, at::Tensor& output, ReduceOp op) {
    if (!alone()) return comm_->reduce_scatter_async(input, output, op);
    output.copy_(input.view_as(output));
    return done();
  }

  std::shared_ptr<Communicator> comm_;
};

}  // namespace

struct C10dGroupRegistration::Group {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

C10dGroupRegistration::C10dGroupRegistration(const std::string& name, std::shared_ptr<Communicator> comm)
    : name_(name) {
  DPT_CHECK(comm != nullptr, InvalidArgumentError, "C10dGroupRegistration '", name, "': no communicator");
  DPT_CHECK(!name.empty(), InvalidArgumentError, "C10dGroupRegistration: the group name is empty");
  auto group = c10::make_intrusive<c10d::ProcessGroup>(comm->rank(), comm->size());
  const auto device = comm->device().type();
  group->setBackend(device, c10d::ProcessGroup::BackendType::CUSTOM,
                    c10::make_intrusive<CommunicatorBackend>(std::move(comm)));
  group->setDefaultBackend(c10d::ProcessGroup::BackendType::CUSTOM);
  try {
    c10d::register_process_group(name, group);
  } catch (const c10::Error& error) {
    DPT_THROW(InvalidArgumentError, "C10dGroupRegistration: c10d refused the group name '", name,
             "' (registered already?): ", error.what_without_backtrace());
  }
  group_ = std::make_unique<Group>(Group{std::move(group)});
}

C10dGroupRegistration::~C10dGroupRegistration() {
  try {
    c10d::unregister_process_group(name_);
  } catch (...) {
    // Nothing to undo: the name was never registered, or c10d's registry is gone (process exit).
  }
}

}  // namespace dpt
