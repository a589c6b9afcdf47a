#include "dptrain/parallel/comm_hooks/powersgd.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <vector>

#include "comm_hooks/hook_thread.h"
#include "dptrain/core/error.h"

namespace dpt {

// How one bucket is sent: which gradients become matrices (and their slices of the flat P and Q
// buffers), which go as they are; plus what persists between steps (Q, the error).
struct PowerSgd::BucketState {
  struct Matrix {
    int64_t offset, rows, cols, rank;  // the gradient: buffer[offset : offset + rows * cols]
    // P and Q transposed (rank x rows, rank x cols; views of `p` and `q` below): the products
    // with M then run along its rows (see Note [Skinny products]).
    torch::Tensor p_t, q_t;
    torch::Tensor error;  // rows x cols: a view of `error` below (error feedback)
  };
  std::vector<const c10::TensorImpl*> parameters;  // which bucket this state is for
  int64_t numel = 0;
  std::vector<Matrix> matrices;
  std::vector<std::pair<int64_t, int64_t>> plain;  // (offset, numel) of gradients sent uncompressed
  int64_t plain_numel = 0;
  torch::Tensor p, q;        // flat: every matrix's P, Q - one all-reduce each
  // Error feedback: what the last approximation left out of each matrix. Only the matrices keep
  // one: the plain gradients are averaged exactly, so their per-rank remainders (the rank's gradient
  // minus the average) average to zero and would change nothing.
  torch::Tensor error;
  bool q_ready = false;      // warm start: q holds the last step's Q
  int64_t sent_numel() const { return plain_numel + (p.defined() ? p.numel() + q.numel() : 0); }
};

namespace {

std::vector<const c10::TensorImpl*> identities(const std::vector<torch::Tensor>& parameters) {
  std::vector<const c10::TensorImpl*> ids;
  for (const auto& param : parameters) ids.push_back(param.unsafeGetTensorImpl());
  return ids;
}

// Note [Skinny products]
// M is n x m and row-major, P and Q have r (1-4) columns. Written the textbook way, M Q and
// M^T P run 7x and 30x slower than P^T = Q^T M^T and Q^T = P^T M on the CPU (MKL, one thread:
// 1024 x 1024, r = 2: 835 and 3755 us against 119 and 123), and the approximation P Q^T as one
// matmul with an inner dimension of r is slower than r rank-one updates (712 us against 125), up to
// r = 8. Hence P and Q are kept transposed and the approximation is a sum of outer products.
constexpr int64_t kMaxRankOneUpdates = 8;

// M = P Q^T from the transposed factors (rank x rows, rank x cols), into `target`.
void write_approximation(torch::Tensor& target, const torch::Tensor& p_t, const torch::Tensor& q_t) {
  const int64_t rank = p_t.size(0);
  if (rank > kMaxRankOneUpdates) {
    torch::mm_out(target, p_t.t(), q_t);
    return;
  }
  torch::outer_out(target, p_t[0], q_t[0]);
  for (int64_t k = 1; k < rank; ++k) target.addr_(p_t[k], q_t[k]);
}

// Columns orthonormal, in place (QR; in float32 for 16-bit types, which QR does not take).
void orthonormalize(torch::Tensor matrix) {
  const bool narrow_type = matrix.scalar_type() == torch::kHalf || matrix.scalar_type() == torch::kBFloat16;
  torch::Tensor q = std::get<0>(torch::linalg_qr(narrow_type ? matrix.to(torch::kFloat) : matrix, "reduced"));
  matrix.copy_(q);
}

}  // namespace

PowerSgd::PowerSgd(PowerSgdOptions options)
    : options_(options), generator_(at::make_generator<at::CPUGeneratorImpl>(options.seed())) {
  DPT_CHECK(options_.rank() >= 1, InvalidArgumentError, "PowerSGD rank must be >= 1, got ", options_.rank());
  DPT_CHECK(options_.start_iteration() >= 0, InvalidArgumentError, "PowerSGD start_iteration must be >= 0, got ",
            options_.start_iteration());
  DPT_CHECK(options_.min_compression_rate() >= 1.0, InvalidArgumentError,
            "PowerSGD min_compression_rate must be >= 1, got ", options_.min_compression_rate());
  worker_ = std::make_unique<HookThread>("PowerSGD");
}

PowerSgd::~PowerSgd() = default;

double PowerSgd::compression_ratio() const {
  const int64_t sent = sent_elements_.load();
  return sent > 0 ? static_cast<double>(gradient_elements_.load()) / static_cast<double>(sent) : 1.0;
}

CommHook PowerSgd::comm_hook() {
  std::shared_ptr<PowerSgd> self = shared_from_this();
  return [self](GradBucket& bucket) {
    const bool compress = self->iteration_.load() >= self->options_.start_iteration();
    if (bucket.is_last()) ++self->iteration_;
    return compress ? self->compress(bucket) : comm_hooks::allreduce_average(bucket);
  };
}

PowerSgd::BucketState& PowerSgd::state_for(const GradBucket& bucket) {
  auto ids = identities(bucket.parameters());
  auto& slot = buckets_[bucket.index()];
  if (slot && slot->parameters == ids) return *slot;
  // New, or DDP regrouped its buckets: a fresh start for this one (every rank sees the same buckets,
  // so every rank starts afresh alike).
  if (slot) {
    gradient_elements_ -= slot->numel;
    sent_elements_ -= slot->sent_numel();
  }
  slot = std::make_unique<BucketState>();
  BucketState& state = *slot;
  state.parameters = std::move(ids);
  const auto options = bucket.buffer().options();
  int64_t offset = 0, p_numel = 0, q_numel = 0;
  for (const auto& param : bucket.parameters()) {
    const int64_t numel = param.numel();
    const int64_t rows = param.dim() >= 2 ? param.size(0) : 0;
    const int64_t cols = rows > 0 ? numel / rows : 0;
    const int64_t rank = std::min({options_.rank(), rows, cols});
    const bool worth_it = rows > 0 && static_cast<double>((rows + cols) * rank) * options_.min_compression_rate() <
                                          static_cast<double>(numel);
    if (worth_it) {
      state.matrices.push_back({offset, rows, cols, rank, {}, {}, {}});
      p_numel += rows * rank;
      q_numel += cols * rank;
    } else {
      state.plain.emplace_back(offset, numel);
      state.plain_numel += numel;
    }
    offset += numel;
  }
  state.numel = offset;
  if (!state.matrices.empty()) {
    state.p = torch::empty({p_numel}, options);
    state.q = torch::empty({q_numel}, options);
    if (options_.error_feedback()) state.error = torch::zeros({state.numel - state.plain_numel}, options);
    int64_t p_at = 0, q_at = 0, error_at = 0;
    for (auto& m : state.matrices) {
      m.p_t = state.p.narrow(0, p_at, m.rows * m.rank).view({m.rank, m.rows});
      m.q_t = state.q.narrow(0, q_at, m.cols * m.rank).view({m.rank, m.cols});
      if (state.error.defined()) m.error = state.error.narrow(0, error_at, m.rows * m.cols).view({m.rows, m.cols});
      p_at += m.rows * m.rank;
      q_at += m.cols * m.rank;
      error_at += m.rows * m.cols;
    }
  }
  gradient_elements_ += state.numel;
  sent_elements_ += state.sent_numel();
  return state;
}

BucketFuture PowerSgd::compress(GradBucket& bucket) {
  BucketState& state = state_for(bucket);
  torch::Tensor buffer = bucket.buffer();
  Communicator* comm = &bucket.communicator();
  const double divisor = bucket.divisor();
  // `this`, not a shared_ptr: the job must not be the last owner (the worker cannot join itself);
  // the worker is destroyed, finishing its jobs, before the bucket states.
  WorkPtr work = worker_->submit([this, &state, buffer, comm, divisor] { run(state, buffer, *comm, divisor); },
                                 buffer.device());
  return BucketFuture(std::move(work), [buffer] { return buffer; });
}

void PowerSgd::initialize_q(BucketState& state) {
  // Drawn on the CPU from the shared generator, in bucket order: the same Q on every rank.
  for (auto& m : state.matrices) {
    torch::Tensor q = torch::randn({m.cols, m.rank}, generator_, torch::kFloat);
    orthonormalize(q);
    m.q_t.copy_(q.t());
  }
  state.q_ready = true;
}

void PowerSgd::run(BucketState& state, torch::Tensor buffer, Communicator& comm, double divisor) {
  auto matrix = [&buffer](const BucketState::Matrix& m) {
    return buffer.narrow(0, m.offset, m.rows * m.cols).view({m.rows, m.cols});
  };
  const bool feedback = options_.error_feedback();
  if (feedback) {
    for (const auto& m : state.matrices) matrix(m).add_(m.error);  // what this rank wants to send
  }
  torch::Tensor plain;
  WorkPtr plain_work;
  if (!state.plain.empty()) {
    std::vector<torch::Tensor> parts;
    for (const auto& [offset, numel] : state.plain) parts.push_back(buffer.narrow(0, offset, numel));
    plain = torch::cat(parts);
    plain_work = comm.allreduce_async(plain);
  }
  if (!state.matrices.empty()) {
    if (!options_.warm_start() || !state.q_ready) initialize_q(state);
    for (auto& m : state.matrices) torch::mm_out(m.p_t, m.q_t, matrix(m).t());  // P^T = Q^T M^T
    comm.allreduce_async(state.p)->wait();
    for (auto& m : state.matrices) {
      orthonormalize(m.p_t.t());
      torch::mm_out(m.q_t, m.p_t, matrix(m));  // Q^T = P^T M
    }
    comm.allreduce_async(state.q)->wait();
    state.q.div_(divisor);
    for (auto& m : state.matrices) {
      // The approximation is computed alike on every rank from the same P and Q, so the ranks'
      // gradients are bitwise equal; the error is what this rank wanted to send minus it.
      torch::Tensor target = matrix(m);
      if (feedback) m.error.copy_(target);
      write_approximation(target, m.p_t, m.q_t);
      if (feedback) m.error.sub_(target);
    }
  }
  if (plain_work) {
    plain_work->wait();
    plain.div_(divisor);
    int64_t at = 0;
    for (const auto& [offset, numel] : state.plain) {
      buffer.narrow(0, offset, numel).copy_(plain.narrow(0, at, numel));
      at += numel;
    }
  }
}

}  // namespace dpt
