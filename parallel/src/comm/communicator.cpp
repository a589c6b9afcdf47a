// The checking layer in front of every backend (Note [One checking layer] in communicator.h):
// each public collective checks its arguments, refuses a broken communicator, and hands the
// backend a numbered, described call with its fingerprint.
#include "dptrain/parallel/comm/communicator.h"

#include "comm/fingerprint.h"
#include "comm/tensor_checks.h"
#include "dptrain/core/error.h"

namespace dpt {
namespace {

// The result of the default run_allreduce_coalesced: the fused buffer is copied back into the
// caller's tensors by the first wait() (is_completed() says when that will not block).
class CoalescedWork final : public Work {
 public:
  CoalescedWork(WorkPtr inner, torch::Tensor fused, std::vector<torch::Tensor> targets)
      : inner_(std::move(inner)), fused_(std::move(fused)), targets_(std::move(targets)) {}

  void wait() override {
    inner_->wait();
    if (copied_) return;
    int64_t offset = 0;
    for (auto& target : targets_) {
      target.view(-1).copy_(fused_.slice(0, offset, offset + target.numel()));
      offset += target.numel();
    }
    copied_ = true;
  }
  bool is_completed() override { return inner_->is_completed(); }

 private:
  WorkPtr inner_;
  torch::Tensor fused_;
  std::vector<torch::Tensor> targets_;
  bool copied_ = false;
};

int64_t code(c10::ScalarType dtype) { return static_cast<int64_t>(dtype); }
int64_t code(ReduceOp op) { return static_cast<int64_t>(op); }

}  // namespace

Communicator::Communicator(std::string backend, const Identity& identity)
    : backend_(std::move(backend)),
      rank_(identity.rank),
      size_(identity.size),
      local_rank_(identity.local_rank),
      device_(identity.device),
      checks_calls_(detail::call_check_enabled()) {}

std::string Communicator::who() const { return detail::concat(backend_, " rank ", rank_, "/", size_); }

void Communicator::check_device(const torch::Tensor& tensor, const std::string& what) const {
  DPT_CHECK(accepts_device(tensor.device()), InvalidArgumentError, who(), ": ", what, " is on ",
            tensor.device().str(), " but this communicator works on ", device_.str(),
            "; create the tensors of collectives on communicator->device()");
}

void Communicator::set_timeout(std::chrono::milliseconds timeout) {
  DPT_CHECK(timeout.count() > 0, InvalidArgumentError, who(), ": timeout must be > 0 ms, got ", timeout.count());
  apply_timeout(timeout);
}

Collective Communicator::next_call(CollectiveKind kind, const std::string& what, const std::string& described,
                                   int64_t dtype, int64_t numel, int64_t op, int64_t root) {
  Collective call;
  call.kind = kind;
  call.sequence = sequence_ + 1;
  call.description = detail::concat(what, " #", call.sequence, described.empty() ? "" : " of ", described);
  DPT_CHECK(!is_broken(), CommunicationError, who(), ": cannot run ", call.description, ": ", broken_reason());
  ++sequence_;
  call.fingerprint = detail::make_fingerprint(kind, dtype, numel, op, root);
  call.check_across_ranks = checks_calls_;
  return call;
}

Collective Communicator::checked_allreduce(const torch::Tensor& tensor, ReduceOp op) {
  const std::string what = detail::concat("allreduce(", to_string(op), ")");
  detail::check_tensor(tensor, who(), what + ": tensor", *this);
  detail::check_reduce_op(op, tensor.scalar_type(), who(), what);
  return next_call(CollectiveKind::Allreduce, what, detail::describe(tensor), code(tensor.scalar_type()),
                   tensor.numel(), code(op));
}

WorkPtr Communicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  const Collective call = checked_allreduce(tensor, op);
  return run_allreduce(call, tensor, op);
}

void Communicator::allreduce(torch::Tensor& tensor, ReduceOp op) {
  const Collective call = checked_allreduce(tensor, op);
  run_allreduce_blocking(call, tensor, op);
}

WorkPtr Communicator::broadcast_async(torch::Tensor& tensor, int root) {
  detail::check_tensor(tensor, who(), "broadcast: tensor", *this);
  DPT_CHECK(root >= 0 && root < size_, InvalidArgumentError, who(), ": broadcast: root ", root, " is not in [0, ",
            size_, ")");
  const Collective call = next_call(CollectiveKind::Broadcast, detail::concat("broadcast from rank ", root),
                                    detail::describe(tensor), code(tensor.scalar_type()), tensor.numel(), -1, root);
  return run_broadcast(call, tensor, root);
}

WorkPtr Communicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  detail::check_tensor(input, who(), "allgather: input", *this);
  detail::check_tensor(output, who(), "allgather: output", *this);
  detail::check_same_kind(input, output, who(), "allgather");
  DPT_CHECK(output.numel() == input.numel() * size_, InvalidArgumentError, who(), ": allgather: output has ",
            output.numel(), " elements but needs world size ", size_, " x input's ", input.numel());
  const Collective call = next_call(CollectiveKind::Allgather, "allgather", detail::describe(input),
                                    code(input.scalar_type()), input.numel());
  return run_allgather(call, input, output);
}

WorkPtr Communicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) {
  const std::string what = detail::concat("reduce_scatter(", to_string(op), ")");
  detail::check_tensor(input, who(), what + ": input", *this);
  detail::check_tensor(output, who(), what + ": output", *this);
  detail::check_same_kind(input, output, who(), what);
  detail::check_reduce_op(op, input.scalar_type(), who(), what);
  DPT_CHECK(input.numel() == output.numel() * size_, InvalidArgumentError, who(), ": ", what, ": input has ",
            input.numel(), " elements but needs world size ", size_, " x output's ", output.numel());
  const Collective call = next_call(CollectiveKind::ReduceScatter, what, detail::describe(input),
                                    code(input.scalar_type()), input.numel(), code(op));
  return run_reduce_scatter(call, input, output, op);
}

WorkPtr Communicator::barrier_async() { return run_barrier(next_call(CollectiveKind::Barrier, "barrier", "")); }

WorkPtr Communicator::allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op) {
  const std::string what = detail::concat("allreduce_coalesced(", to_string(op), ")");
  DPT_CHECK(!tensors.empty(), InvalidArgumentError, who(), ": ", what, ": the tensor list is empty");
  int64_t numel = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    detail::check_tensor(tensors[i], who(), detail::concat(what, ": tensor ", i), *this);
    detail::check_same_kind(tensors[0], tensors[i], who(), detail::concat(what, ": tensors 0 and ", i));
    numel += tensors[i].numel();
  }
  detail::check_reduce_op(op, tensors[0].scalar_type(), who(), what);
  const Collective call =
      next_call(CollectiveKind::Coalesced, what,
                detail::concat(tensors.size(), " tensors, ", numel, " x ", c10::toString(tensors[0].scalar_type()),
                               " on ", tensors[0].device()),
                code(tensors[0].scalar_type()), numel, code(op), static_cast<int64_t>(tensors.size()));
  return run_allreduce_coalesced(call, tensors, op);
}

WorkPtr Communicator::run_allreduce_coalesced(const Collective& call, std::vector<torch::Tensor>& tensors,
                                              ReduceOp op) {
  std::vector<torch::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.view(-1));
  torch::Tensor fused = torch::cat(flat);
  auto work = run_allreduce(call, fused, op);
  return std::make_shared<CoalescedWork>(std::move(work), fused, tensors);
}

std::shared_ptr<Communicator> Communicator::split(int color, int key) {
  return run_split(next_call(CollectiveKind::Split, detail::concat("split(color ", color, ", key ", key, ")"), ""),
                   color, key);
}

}  // namespace dpt
