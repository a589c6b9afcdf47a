#include "dptrain/parallel/ddp/reducer.h"

#include <algorithm>
#include <numeric>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/parallel/ddp/ddp_consistency.h"

namespace dpt {
namespace {

std::string describe(int64_t numel, const torch::TensorOptions& options) {
  return std::string(c10::toString(c10::typeMetaToScalarType(options.dtype()))) + "[" + std::to_string(numel) +
         "] on " + options.device().str();
}

std::string describe(const torch::Tensor& t) { return describe(t.numel(), t.options()); }

}  // namespace

Reducer::Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names, CommunicatorPtr comm,
                 ReducerOptions options)
    : params_(std::move(params)), names_(std::move(names)), comm_(std::move(comm)), options_(std::move(options)) {
  DPT_CHECK(comm_, InvalidArgumentError, "Reducer needs a communicator");
  DPT_ASSERT(params_.size() == names_.size());
  DPT_CHECK(options_.bucket_cap_bytes > 0 && options_.first_bucket_cap_bytes > 0, InvalidArgumentError,
            "bucket caps must be > 0 bytes");
  ready_.assign(params_.size(), 0);
  locally_used_.assign(params_.size(), 0);
  // Over one rank the buckets are never reduced (Note [Nothing to reduce]), and without parameters
  // there are none: nothing to tune.
  if (comm_->size() == 1 || params_.empty()) options_.auto_bucket_cap = false;
  warmups_left_ = options_.auto_bucket_cap ? 1 : 0;
  ready_s_.assign(params_.size(), -1);
  all_indices_.resize(params_.size());
  std::iota(all_indices_.begin(), all_indices_.end(), size_t{0});
  build_buckets(std::vector<size_t>(all_indices_.rbegin(), all_indices_.rend()));  // reverse registration order
}

void Reducer::set_comm_hook(CommHook hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  DPT_CHECK(phase_ != Phase::Reducing, InvalidArgumentError, "register_comm_hook during a backward pass");
  options_.comm_hook = std::move(hook);
}

void Reducer::set_on_bucket_reduced(BucketReduced callback) {
  std::lock_guard<std::mutex> lock(mutex_);
  DPT_CHECK(phase_ != Phase::Reducing, InvalidArgumentError, "overlap_optimizer during a backward pass");
  DPT_CHECK(!callback || !options_.find_unused_parameters, UnsupportedError,
            "DistributedDataParallel::overlap_optimizer cannot be combined with find_unused_parameters: the "
            "gradients are written back only once the used-parameter map has been reduced, after every bucket");
  on_bucket_reduced_ = std::move(callback);
}

void Reducer::build_buckets(const std::vector<size_t>& order) {
  torch::NoGradGuard no_grad;
  auto assignment = assign_buckets(params_, order, options_.first_bucket_cap_bytes, options_.bucket_cap_bytes);
  std::vector<Bucket> buckets;
  locate_.assign(params_.size(), {0, 0});
  for (size_t b = 0; b < assignment.size(); ++b) {
    Bucket bucket;
    int64_t total = 0;
    for (size_t index : assignment[b]) {
      bucket.offsets.push_back(total);
      total += params_[index].numel();
    }
    bucket.numel = total;
    bucket.options = params_[assignment[b].front()].options().requires_grad(false);
    for (size_t k = 0; k < assignment[b].size(); ++k) locate_[assignment[b][k]] = {b, k};
    bucket.param_indices = std::move(assignment[b]);
    bucket.pending = bucket.param_indices.size();
    buckets.push_back(std::move(bucket));
  }
  // The contents come at the first synchronized backward (allocate_buckets): a DDP whose gradients
  // another component reduces (ZeRO) or that reduces nothing (Note [Nothing to reduce]) never
  // holds them. Gradients still viewing the buckets of an earlier layout move at that backward.
  buckets_ = std::move(buckets);
  if (options_.debug >= DebugLevel::Info) DPT_LOG_INFO("DDP bucket layout:\n{}", bucket_layout());
}

void Reducer::allocate_buckets() {
  torch::NoGradGuard no_grad;
  for (auto& bucket : buckets_) {
    if (bucket.contents.defined()) continue;
    bucket.contents = torch::zeros({bucket.numel}, bucket.options);
    for (size_t k = 0; k < bucket.param_indices.size(); ++k) {
      const auto& param = params_[bucket.param_indices[k]];
      // detach(): the same memory, but not an autograd view of the bucket, so .grad can be
      // detached in place (libtorch's Optimizer::zero_grad calls grad.detach_(), which a view refuses).
      bucket.views.push_back(bucket.contents.narrow(0, bucket.offsets[k], param.numel()).view(param.sizes()).detach());
      if (options_.gradient_as_bucket_view && param.grad().defined()) {
        bucket.views[k].copy_(param.grad());
        param.mutable_grad() = bucket.views[k];
      }
    }
  }
}

std::string Reducer::bucket_layout() const {
  std::string text;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& bucket = buckets_[b];
    text += "  bucket " + std::to_string(b) + ": " + describe(bucket.numel, bucket.options) + " (" +
            std::to_string(bucket.nbytes()) + " bytes), " + std::to_string(bucket.param_indices.size()) +
            " params:";
    for (size_t index : bucket.param_indices) text += " " + names_[index];
    text += "\n";
  }
  return text;
}

void Reducer::reset_buckets() {
  std::fill(ready_.begin(), ready_.end(), 0);
  for (auto& bucket : buckets_) {
    bucket.pending = bucket.param_indices.size();
    bucket.future.reset();
  }
  next_bucket_ = 0;
  used_map_work_.reset();
}

// --- Note [Iteration state machine]: every transition ----------------------------------------------

void Reducer::prepare_for_backward(bool sync, double divisor) {
  std::lock_guard<std::mutex> lock(mutex_);
  reset_buckets();
  handed_over_ = false;
  divisor_ = divisor;
  local_only_ = comm_->size() == 1 && !options_.comm_hook && divisor_ == 1;
  if (sync && !local_only_) allocate_buckets();
  if (sync && layout_ == Layout::Recording) {  // a warm-up or an error before: record afresh
    ready_order_.clear();
    std::fill(ready_s_.begin(), ready_s_.end(), -1.0);
  }
  phase_ = sync ? Phase::Expecting : Phase::Accumulating;
}

bool Reducer::backward_started() {
  std::lock_guard<std::mutex> lock(mutex_);
  DPT_CHECK(phase_ != Phase::Reduced, ModelError, "DistributedDataParallel: rank ", comm_->rank(),
            ": a second backward through the same forward; its gradients would not be averaged over ranks. "
            "Run a forward through DDP before every backward (accumulate micro-batches with no_sync())");
  if (phase_ != Phase::Expecting) return false;
  phase_ = Phase::Reducing;
  backward_start_us_ = trace_clock_us();
  return true;
}

bool Reducer::mark_grad_ready(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (phase_) {
    case Phase::Idle:
    case Phase::Reduced:
      return false;  // a backward DDP::forward did not prepare (e.g. through the bare module)
    case Phase::Accumulating:
      locally_used_[index] = 1;
      return false;
    case Phase::Expecting:
    case Phase::Reducing:
      break;
  }
  locally_used_[index] = 1;
  DPT_CHECK(!ready_[index], ModelError, "DistributedDataParallel: parameter '", names_[index],
            "' received its gradient twice in one backward pass (rank ", comm_->rank(),
            "); run one backward per DDP forward");
  const bool first = phase_ == Phase::Expecting;
  if (first) backward_start_us_ = trace_clock_us();
  phase_ = Phase::Reducing;
  if (layout_ == Layout::Recording) ready_order_.push_back(index);
  if (timing_gradients()) record_ready_time(index);
  mark_ready_locked(index);
  return first;
}

void Reducer::finalize_backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != Phase::Reducing) return;
  finalize_locked();
}

void Reducer::finish_pending() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != Phase::Expecting) return;
  phase_ = Phase::Reducing;
  finalize_locked();
}

void Reducer::run_shadow_backward(double divisor) {
  std::lock_guard<std::mutex> lock(mutex_);
  DPT_ASSERT(phase_ != Phase::Reducing, "join's shadow backward during a backward pass");
  reset_buckets();
  handed_over_ = false;
  allocate_buckets();
  divisor_ = divisor;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b].future.emplace(run_hook(b, torch::zeros_like(buckets_[b].contents)));
  }
  if (options_.find_unused_parameters) {
    std::fill(locally_used_.begin(), locally_used_.end(), 0);
    torch::Tensor used = used_map_reduction_start();
    used_map_work_->wait();
    used_map_work_.reset();
  }
  for (auto& bucket : buckets_) bucket.future->wait();
  reset_buckets();
  ready_order_.clear();  // a shadow backward has no order of its own: the rebuild uses the default
  end_recording_iteration();
  phase_ = Phase::Reduced;
  ++synced_iterations_;
}

// ---------------------------------------------------------------------------------------------------

void Reducer::mark_ready_locked(size_t index) {
  ready_[index] = 1;
  if (local_only_) return;  // Note [Nothing to reduce]
  copy_grad_to_bucket(index);
  auto& bucket = buckets_[locate_[index].first];
  DPT_ASSERT(bucket.pending > 0);
  if (--bucket.pending == 0) launch_ready_buckets();
}

void Reducer::copy_grad_to_bucket(size_t index) {
  torch::NoGradGuard no_grad;
  auto& param = params_[index];
  const auto& [b, k] = locate_[index];
  auto& view = buckets_[b].views[k];
  const auto& grad = param.grad();
  if (!grad.defined()) {
    view.zero_();  // unused in this iteration: contributes zero, like PyTorch
    return;
  }
  // The average's division is folded into this copy (PyTorch does the same): one pass over the
  // gradient fewer, and fp16/bf16 sums cannot overflow before the division.
  const bool already_in_bucket = grad.is_alias_of(view) && grad.data_ptr() == view.data_ptr();
  if (predivides()) {
    const double scale = 1.0 / divisor_;
    if (already_in_bucket) {
      view.mul_(scale);
    } else {
      torch::mul_out(view, grad, torch::scalar_tensor(scale, grad.options().dtype(torch::kDouble)));
    }
  } else if (!already_in_bucket) {
    view.copy_(grad);
  }
  if (options_.gradient_as_bucket_view && !already_in_bucket) param.mutable_grad() = view;
}

BucketFuture Reducer::run_hook(size_t bucket_index, torch::Tensor contents) {
  if (options_.debug >= DebugLevel::Detail) {
    check_next_collective(*comm_, "comm hook on bucket " + std::to_string(bucket_index) + " " + describe(contents));
  }
  std::vector<torch::Tensor> params;
  for (size_t index : buckets_[bucket_index].param_indices) params.push_back(params_[index]);
  GradBucket grad_bucket(bucket_index, bucket_index + 1 == buckets_.size(), std::move(contents), *comm_, divisor_,
                         std::move(params));
  buckets_[bucket_index].launch_time_us = trace_clock_us();
  if (options_.comm_hook) return options_.comm_hook(grad_bucket);
  return BucketFuture(comm_->allreduce_async(grad_bucket.buffer()), [contents]() { return contents; });
}

void Reducer::launch_ready_buckets() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) {
    buckets_[next_bucket_].future.emplace(run_hook(next_bucket_, buckets_[next_bucket_].contents));
    ++next_bucket_;
  }
}

torch::Tensor Reducer::used_map_reduction_start() {
  // Which parameters some rank used: a parameter used nowhere keeps its .grad untouched.
  auto local = torch::tensor(std::vector<int32_t>(locally_used_.begin(), locally_used_.end()), torch::kInt32)
                   .to(comm_->device());
  if (options_.debug >= DebugLevel::Detail) check_next_collective(*comm_, "allreduce used-parameter map " + describe(local));
  used_map_work_ = comm_->allreduce_async(local);
  return local;
}

void Reducer::wait_for_bucket(size_t b) {
  auto& bucket = buckets_[b];
  DPT_ASSERT(bucket.future.has_value(), "bucket ", b, " was never launched");
  torch::Tensor result = bucket.future->wait();
  if (result.defined() && !result.is_same(bucket.contents)) bucket.contents.copy_(result.view_as(bucket.contents));
  if (trace_) {
    const double end = trace_clock_us();
    trace_({"allreduce bucket " + std::to_string(b), "ddp", bucket.launch_time_us, end - bucket.launch_time_us});
  }
}

void Reducer::write_back(size_t i) {
  auto& param = params_[i];
  const auto& view = buckets_[locate_[i].first].views[locate_[i].second];
  const auto& grad = param.grad();
  if (options_.gradient_as_bucket_view) {
    if (!grad.defined() || !grad.is_alias_of(view)) param.mutable_grad() = view;
  } else if (grad.defined()) {
    param.mutable_grad().copy_(view);
  } else {
    param.mutable_grad() = view.clone();
  }
}

void Reducer::wait_and_write_back(const torch::Tensor& global_used_device) {
  torch::NoGradGuard no_grad;
  if (on_bucket_reduced_) {
    DPT_ASSERT(!used_map_work_, "on_bucket_reduced with find_unused_parameters");
    hand_over_bucket_by_bucket();
    return;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) wait_for_bucket(b);
  std::vector<int32_t> global_used;
  if (used_map_work_) {
    used_map_work_->wait();
    used_map_work_.reset();
    auto cpu = global_used_device.cpu();
    global_used.assign(cpu.data_ptr<int32_t>(), cpu.data_ptr<int32_t>() + cpu.numel());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!global_used.empty() && global_used[i] == 0) continue;  // unused everywhere: .grad untouched
    write_back(i);
  }
}

// Note [Optimizer per bucket]: bucket b's parameters are handed over while buckets b+1... are
// still in flight.
void Reducer::hand_over_bucket_by_bucket() {
  size_t b = 0;
  try {
    for (; b < buckets_.size(); ++b) {
      wait_for_bucket(b);
      for (size_t i : buckets_[b].param_indices) write_back(i);
      on_bucket_reduced_(buckets_[b].param_indices);
    }
  } catch (...) {
    // The other ranks still run these collectives: see them through before the error leaves.
    for (++b; b < buckets_.size(); ++b) {
      try {
        buckets_[b].future->wait();
      } catch (...) {
      }
    }
    throw;
  }
  handed_over_ = true;
}

void Reducer::finalize_locked() {
  const double start = trace_clock_us();
  last_backward_end_us_ = start;
  // Whatever happens below, the iteration is over: a second backward through it is an error.
  struct EndIteration {
    Reducer* self;
    ~EndIteration() {
      self->phase_ = Phase::Reduced;
      std::fill(self->locally_used_.begin(), self->locally_used_.end(), 0);
      self->reset_buckets();
    }
  } end{this};

  std::vector<size_t> unready;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!ready_[i]) unready.push_back(i);
  }
  // Parameters without a gradient still go through their buckets (as zeros, or their gradient
  // accumulated under no_sync), so this rank issues the same collectives as the others even when
  // it is about to report an error.
  if (local_only_) {
    // Note [Nothing to reduce]: every .grad already is its own average; an unused parameter's
    // .grad stays as it was, as the used-parameter map would leave it.
    last_exposed_comm_s_ = 0;
    if (on_bucket_reduced_) {
      on_bucket_reduced_(all_indices_);
      handed_over_ = true;
    }
  } else {
    for (size_t i : unready) mark_ready_locked(i);
    torch::Tensor used;
    if (options_.find_unused_parameters) used = used_map_reduction_start();
    wait_and_write_back(used);
    last_exposed_comm_s_ = (trace_clock_us() - start) * 1e-6;
    if (trace_) trace_({"wait for buckets", "ddp", start, trace_clock_us() - start});
  }

  if (!unready.empty() && !options_.find_unused_parameters) {
    std::string names;
    for (size_t k = 0; k < unready.size() && k < 8; ++k) names += (k ? ", '" : "'") + names_[unready[k]] + "'";
    if (unready.size() > 8) names += " and " + std::to_string(unready.size() - 8) + " more";
    ready_order_.clear();
    DPT_THROW(ModelError, "DistributedDataParallel: rank ", comm_->rank(), ": ", unready.size(),
              " parameter(s) received no gradient in this backward pass: ", names,
              ". If parts of the model are not used in every iteration, construct DDP with "
              "DdpOptions().find_unused_parameters(true); otherwise make the loss depend on every parameter");
  }
  if (layout_ == Layout::Recording) {
    for (size_t i : unready) {
      ready_order_.push_back(i);
      if (timing_gradients()) ready_s_[i] = (start - backward_start_us_) * 1e-6;
    }
  }
  end_recording_iteration();
  ++synced_iterations_;
}

// Every rank passes the same synchronized iterations (real or shadow) through here, so every rank
// reaches RebuildPending at the same forward.
void Reducer::end_recording_iteration() {
  if (layout_ != Layout::Recording) return;
  if (warmups_left_ > 0) {
    --warmups_left_;
    return;
  }
  layout_ = Layout::RebuildPending;
}

bool Reducer::timing_gradients() const {
  return options_.auto_bucket_cap && layout_ == Layout::Recording && warmups_left_ == 0;
}

void Reducer::record_ready_time(size_t index) {
  // On a GPU the hook runs when the gradient's kernels are queued, not done: wait for them (in
  // this one iteration), or every gradient would look ready at once.
  wait_for_device(params_[index].device());
  ready_s_[index] = (trace_clock_us() - backward_start_us_) * 1e-6;
}

size_t Reducer::choose_cap(int root) {
  size_t total = 0;
  for (const auto& param : params_) total += static_cast<size_t>(param.numel()) * param.element_size();
  // Every rank measures (the all-reduces are collectives); root decides from its own timings.
  const AllreduceCurve curve = measure_allreduce_curve(*comm_, params_.front().scalar_type(), total);
  if (comm_->rank() != root) return 0;
  const bool complete = ready_order_.size() == params_.size() &&
                        std::all_of(ready_s_.begin(), ready_s_.end(), [](double t) { return t >= 0; });
  if (!complete) {
    DPT_LOG_WARN("DDP auto bucket cap: the recorded backward was incomplete (a join()ed rank); keeping {} MB",
                 static_cast<double>(options_.bucket_cap_bytes) / (1 << 20));
    return 0;
  }
  bucket_cap_choice_ = choose_bucket_cap(params_, ready_order_, ready_s_, options_.first_bucket_cap_bytes, curve);
  DPT_LOG_INFO("DDP auto {}", bucket_cap_choice_->summary());
  return bucket_cap_choice_->cap_bytes;
}

void Reducer::rebuild_buckets(int root) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (layout_ != Layout::RebuildPending) return;
  layout_ = Layout::Final;
  const size_t n = params_.size();
  // The order, and with an auto cap root's choice in one more element (0: keep the cap).
  auto order = torch::zeros({static_cast<int64_t>(n + (options_.auto_bucket_cap ? 1 : 0))}, torch::kInt64);
  if (options_.auto_bucket_cap) order[static_cast<int64_t>(n)] = static_cast<int64_t>(choose_cap(root));
  if (ready_order_.size() == params_.size()) {
    for (size_t i = 0; i < params_.size(); ++i) order[i] = static_cast<int64_t>(ready_order_[i]);
  } else {
    for (size_t i = 0; i < params_.size(); ++i) order[i] = static_cast<int64_t>(params_.size() - 1 - i);
  }
  if (comm_->size() > 1) {
    auto on_device = order.to(comm_->device());
    if (options_.debug >= DebugLevel::Detail) check_next_collective(*comm_, "broadcast bucket order " + describe(on_device));
    comm_->broadcast(on_device, root);
    order = on_device.cpu();
  }
  std::vector<size_t> new_order(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t index = order[i].item<int64_t>();
    DPT_CHECK(index >= 0 && static_cast<size_t>(index) < params_.size(), CommunicationError,
              "received a corrupt bucket order from rank ", root);
    new_order[i] = static_cast<size_t>(index);
  }
  if (options_.auto_bucket_cap) {
    const int64_t cap = order[static_cast<int64_t>(n)].item<int64_t>();
    DPT_CHECK(cap >= 0, CommunicationError, "received a corrupt bucket cap from rank ", root);
    if (cap > 0) options_.bucket_cap_bytes = static_cast<size_t>(cap);
  }
  ready_order_.clear();
  build_buckets(new_order);
  if (options_.debug >= DebugLevel::Info) DPT_LOG_INFO("DDP buckets rebuilt in gradient-ready order");
}

}  // namespace dpt
