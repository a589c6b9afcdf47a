#include "dptrain/parallel/ddp/distributed_data_parallel.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/parallel/ddp/autograd_hooks.h"
#include "dptrain/parallel/ddp/ddp_consistency.h"
#include "ddp_impl.h"
#include "dptrain/parallel/ddp/reducer.h"

namespace dpt {

DebugLevel parse_debug_level(const std::string& text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.empty() || lower == "off" || lower == "0") return DebugLevel::Off;
  if (lower == "info") return DebugLevel::Info;
  if (lower == "detail") return DebugLevel::Detail;
  DPT_THROW(InvalidArgumentError, "DPTRAIN_DEBUG='", text, "' is not one of OFF, INFO, DETAIL");
}

DebugLevel debug_level_from_env() { return parse_debug_level(env::get_or("DPTRAIN_DEBUG", "")); }

double trace_clock_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

std::string signature(const std::string& kind, const std::string& name, const torch::Tensor& t) {
  return kind + " " + name + " " + c10::toString(t.scalar_type()) + " " + c10::str(t.sizes());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl

DistributedDataParallel::Impl::Impl(Model model_in, CommunicatorPtr comm_in, DdpOptions options_in)
    : model(std::move(model_in)), comm(std::move(comm_in)), options(std::move(options_in)) {
  DPT_CHECK(comm, InvalidArgumentError, "DistributedDataParallel needs a communicator (got null)");
  DPT_CHECK(options.bucket_cap_mb() > 0 && options.first_bucket_cap_mb() > 0, InvalidArgumentError,
            "DdpOptions: bucket_cap_mb and first_bucket_cap_mb must be > 0, got ", options.bucket_cap_mb(), " and ",
            options.first_bucket_cap_mb());
  debug = options.debug() ? *options.debug() : debug_level_from_env();
  model.prepare_for_training();  // TorchScript: eager autograd, so buckets fill during backward
  for (auto& [name, param] : model.named_parameters()) {
    param_names.push_back(name);
    params.push_back(param);
  }
  buffers = model.named_buffers();
  const torch::Device comm_device = comm->device();
  for (size_t i = 0; i < params.size(); ++i) {
    DPT_CHECK(!comm_device.is_cuda() || params[i].device() == comm_device, InvalidArgumentError,
              "DistributedDataParallel: parameter '", param_names[i], "' is on ", params[i].device().str(),
              " but the ", comm->backend_name(), " communicator of rank ", comm->rank(), " works on ",
              comm_device.str(), "; move the model there first (model.to(...))");
    DPT_CHECK(params[i].is_contiguous(), InvalidArgumentError, "DistributedDataParallel: parameter '",
              param_names[i], "' is not contiguous");
  }

  // Same model everywhere, or a clear error on every rank (never a hang in mismatched broadcasts).
  std::vector<std::string> lines;
  for (size_t i = 0; i < params.size(); ++i) lines.push_back(signature("parameter", param_names[i], params[i]));
  for (const auto& [name, buffer] : buffers) lines.push_back(signature("buffer", name, buffer));
  check_same_on_all_ranks(*comm, lines, "DistributedDataParallel: the models (parameters and buffers)");

  std::vector<torch::Tensor> state = params;
  for (const auto& [name, buffer] : buffers) state.push_back(buffer);
  broadcast_coalesced(state, 0, "initial parameters and buffers");

  ReducerOptions reducer_options;
  reducer_options.bucket_cap_bytes = static_cast<size_t>(options.bucket_cap_mb() * 1024 * 1024);
  reducer_options.first_bucket_cap_bytes = static_cast<size_t>(options.first_bucket_cap_mb() * 1024 * 1024);
  reducer_options.bucket_cap_bytes = std::max<size_t>(reducer_options.bucket_cap_bytes, 1);
  reducer_options.first_bucket_cap_bytes = std::max<size_t>(reducer_options.first_bucket_cap_bytes, 1);
  reducer_options.auto_bucket_cap = options.bucket_cap_auto();
  reducer_options.find_unused_parameters = options.find_unused_parameters();
  reducer_options.gradient_as_bucket_view = options.gradient_as_bucket_view();
  reducer_options.comm_hook = options.comm_hook();
  reducer_options.debug = debug;
  reducer = std::make_unique<Reducer>(params, param_names, comm, reducer_options);

  for (size_t i = 0; i < params.size(); ++i) {
    hooks.push_back(std::make_unique<GradReadyHook>(params[i], [this, i] { on_grad_ready(i); }));
  }
  if (debug >= DebugLevel::Info) {
    DPT_LOG_INFO("DDP: {} parameters, {} buffers, {} buckets over {} ranks ({} backend)", params.size(),
                 buffers.size(), reducer->buckets().size(), comm->size(), comm->backend_name());
  }
}

DistributedDataParallel::Impl::~Impl() { hooks.clear(); }

void DistributedDataParallel::Impl::on_grad_ready(size_t index) {
  if (reducer->mark_grad_ready(index)) queue_end_of_backward_callback([this] { finalize(); });
}

void DistributedDataParallel::Impl::watch_output(const torch::Tensor& output) {
  if (!output.defined() || !output.requires_grad() || !torch::GradMode::is_enabled()) return;
  // Backward reaching the output starts the iteration's reduction even when it reaches no
  // parameter of this rank (the other ranks wait for its buckets), and a second backward through
  // the same output is an error instead of gradients silently left unaveraged.
  const_cast<torch::Tensor&>(output).register_hook([this](const torch::Tensor& grad) {
    if (reducer->backward_started()) queue_end_of_backward_callback([this] { finalize(); });
    return grad;
  });
}

void DistributedDataParallel::Impl::watch_outputs(const c10::IValue& output) {
  if (output.isTensor()) {
    watch_output(output.toTensor());
  } else if (output.isTuple()) {
    for (const auto& element : output.toTupleRef().elements()) watch_outputs(element);
  } else if (output.isList()) {
    for (const auto& element : output.toListRef()) watch_outputs(element);
  } else if (output.isGenericDict()) {
    for (const auto& entry : output.toGenericDict()) watch_outputs(entry.value());
  }
}

void DistributedDataParallel::Impl::finalize() {
  reducer->finalize_backward();
  stats.iteration = reducer->synced_iterations();
  stats.backward_s = (reducer->last_backward_end_us() - forward_end_us) * 1e-6;
  stats.exposed_comm_s = reducer->last_exposed_comm_s();
  stats.num_buckets = reducer->buckets().size();
  stats.bytes_reduced = 0;
  for (const auto& bucket : reducer->buckets()) stats.bytes_reduced += bucket.nbytes();
  if (trace) trace({"backward", "ddp", forward_end_us, reducer->last_backward_end_us() - forward_end_us});
  if (debug >= DebugLevel::Info) {
    DPT_LOG_INFO("DDP iteration {}: forward {:.3f} ms, backward {:.3f} ms, exposed communication {:.3f} ms "
                 "({} buckets, {} bytes)",
                 stats.iteration, stats.forward_s * 1e3, stats.backward_s * 1e3, stats.exposed_comm_s * 1e3,
                 stats.num_buckets, stats.bytes_reduced);
  }
}

void DistributedDataParallel::Impl::broadcast_coalesced(const std::vector<torch::Tensor>& tensors, int root,
                                                        const std::string& what) {
  if (comm->size() == 1 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors) groups[{t.device().str(), static_cast<int>(t.scalar_type())}].push_back(t);
  for (auto& [key, group] : groups) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : group) flat.push_back(t.reshape({-1}));
    torch::Tensor buffer = torch::cat(flat);
    if (debug >= DebugLevel::Detail) {
      check_next_collective(*comm, "broadcast " + what + " from rank " + std::to_string(root) + " " +
                                       c10::toString(buffer.scalar_type()) + "[" + std::to_string(buffer.numel()) + "]");
    }
    comm->broadcast(buffer, root);
    int64_t offset = 0;
    for (auto& t : group) {
      t.copy_(buffer.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
}

std::vector<int> DistributedDataParallel::Impl::join_round(int code) {
  auto mine = torch::full({1}, static_cast<int64_t>(code), torch::dtype(torch::kInt64).device(comm->device()));
  auto all = torch::empty({comm->size()}, mine.options());
  comm->allgather(mine, all);
  all = all.cpu();
  std::vector<int> codes;
  for (int r = 0; r < comm->size(); ++r) codes.push_back(static_cast<int>(all[r].item<int64_t>()));
  active_count = static_cast<int>(std::count_if(codes.begin(), codes.end(), [](int c) { return c != 0; }));
  if (active_count > 0) {
    authoritative_rank = static_cast<int>(std::find_if(codes.begin(), codes.end(), [](int c) { return c != 0; }) -
                                          codes.begin());
    last_authoritative_rank = authoritative_rank;
  }
  return codes;
}

std::string DistributedDataParallel::Impl::finished_ranks_text(const std::vector<int>& codes) {
  std::string text;
  for (size_t r = 0; r < codes.size(); ++r) {
    if (codes[r] == 0) text += (text.empty() ? "" : ",") + std::to_string(r);
  }
  return text;
}

double DistributedDataParallel::Impl::divisor() const {
  if (join_active && !join_options.divide_by_initial_world_size()) return std::max(active_count, 1);
  return comm->size();
}

void DistributedDataParallel::Impl::pre_forward() {
  forward_start_us = trace_clock_us();
  if (!torch::GradMode::is_enabled()) return;
  int root = 0;
  if (join_active) {
    const auto codes = join_round(syncs_gradients() ? 1 : 2);
    if (active_count < comm->size() && join_options.throw_on_early_termination()) {
      DPT_THROW(DataError, "uneven inputs: rank(s) ", finished_ranks_text(codes),
                " ran out of batches (Join with throw_on_early_termination; thrown on every rank)");
    }
    for (int code : codes) {
      DPT_CHECK(code == 0 || code == codes[comm->rank()], InvalidArgumentError,
                "under Join, ranks disagree on no_sync() in this iteration (rank ", comm->rank(), ")");
    }
    root = authoritative_rank;
  }
  reducer->rebuild_buckets(root);
  if (options.broadcast_buffers() && !buffers.empty()) {
    std::vector<torch::Tensor> tensors;
    for (const auto& [name, buffer] : buffers) tensors.push_back(buffer);
    broadcast_coalesced(tensors, root, "buffers");
  }
}

void DistributedDataParallel::Impl::post_forward() {
  forward_end_us = trace_clock_us();
  if (!torch::GradMode::is_enabled()) return;
  reducer->prepare_for_backward(syncs_gradients(), divisor());
  stats.forward_s = (forward_end_us - forward_start_us) * 1e-6;
  if (trace) trace({"forward", "ddp", forward_start_us, forward_end_us - forward_start_us});
}

void DistributedDataParallel::Impl::shadow_iteration(const std::vector<int>& codes) {
  reducer->rebuild_buckets(authoritative_rank);
  if (options.broadcast_buffers() && !buffers.empty()) {
    std::vector<torch::Tensor> tensors;
    for (const auto& [name, buffer] : buffers) tensors.push_back(buffer);
    broadcast_coalesced(tensors, authoritative_rank, "buffers");
  }
  const bool others_sync = std::any_of(codes.begin(), codes.end(), [](int c) { return c == 1; });
  if (others_sync) reducer->run_shadow_backward(divisor());
}

void DistributedDataParallel::Impl::sync_final_model() {
  std::vector<torch::Tensor> state = params;
  for (const auto& [name, buffer] : buffers) state.push_back(buffer);
  broadcast_coalesced(state, last_authoritative_rank, "final parameters and buffers after join");
}

// ---------------------------------------------------------------------------------------------
// Public API

DistributedDataParallel::DistributedDataParallel(Model model, CommunicatorPtr comm, DdpOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(comm), std::move(options))) {}
DistributedDataParallel::~DistributedDataParallel() = default;
DistributedDataParallel::DistributedDataParallel(DistributedDataParallel&&) noexcept = default;
DistributedDataParallel& DistributedDataParallel::operator=(DistributedDataParallel&&) noexcept = default;

torch::Tensor DistributedDataParallel::forward(const torch::Tensor& input) {
  impl_->pre_forward();
  torch::Tensor output = impl_->model.forward(input);
  impl_->post_forward();
  impl_->watch_output(output);
  return output;
}

c10::IValue DistributedDataParallel::forward(std::vector<c10::IValue> inputs) {
  impl_->pre_forward();
  c10::IValue output = impl_->model.forward(std::move(inputs));
  impl_->post_forward();
  impl_->watch_outputs(output);
  return output;
}

c10::IValue DistributedDataParallel::call(const std::string& method, std::vector<c10::IValue> inputs) {
  impl_->pre_forward();
  c10::IValue output = impl_->model.run_method(method, std::move(inputs));
  impl_->post_forward();
  impl_->watch_outputs(output);
  return output;
}

void DistributedDataParallel::finish_backward() {
  if (impl_->reducer->phase() != Reducer::Phase::Expecting) return;
  impl_->reducer->finish_pending();
}

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp)
    : ddp_(&ddp), previous_(ddp.impl_->require_backward_grad_sync) {
  ddp_->impl_->require_backward_grad_sync = false;
}
DistributedDataParallel::NoSyncGuard::~NoSyncGuard() { ddp_->impl_->require_backward_grad_sync = previous_; }

void DistributedDataParallel::hand_gradient_reduction_to(std::string by) {
  DPT_CHECK(!by.empty(), InvalidArgumentError, "hand_gradient_reduction_to: name the component");
  DPT_CHECK(!impl_->join_active || impl_->join_options.throw_on_early_termination(), UnsupportedError,
            "DistributedDataParallel: ", by, " cannot take over gradient reduction inside a Join that shadows");
  DPT_CHECK(!impl_->overlapped_optimizer, UnsupportedError, "DistributedDataParallel: ", by,
            " cannot take over gradient reduction: an optimizer is stepped per bucket (overlap_optimizer)");
  impl_->gradients_reduced_by = std::move(by);
}

void DistributedDataParallel::register_comm_hook(CommHook hook) {
  DPT_CHECK(hook, InvalidArgumentError, "register_comm_hook: empty hook");
  impl_->reducer->set_comm_hook(std::move(hook));
}

void DistributedDataParallel::overlap_optimizer(torch::optim::Optimizer* optimizer) {
  if (!optimizer) {
    impl_->reducer->set_on_bucket_reduced(nullptr);
    impl_->overlapped_optimizer.reset();
    return;
  }
  DPT_CHECK(impl_->gradients_reduced_by.empty(), UnsupportedError, "DistributedDataParallel::overlap_optimizer: ",
            impl_->gradients_reduced_by, " reduces the gradients and steps its own optimizer");
  auto stepper = std::make_unique<PerBucketOptimizer>(*optimizer, impl_->params);
  impl_->reducer->set_on_bucket_reduced(
      [step = stepper.get()](const std::vector<size_t>& indices) { step->step(indices); });
  impl_->overlapped_optimizer = std::move(stepper);
}

bool DistributedDataParallel::optimizer_stepped() const {
  return impl_->overlapped_optimizer && impl_->reducer->handed_over_last_iteration();
}

void DistributedDataParallel::set_trace_recorder(TraceRecorder recorder) {
  impl_->trace = recorder;
  impl_->reducer->set_trace_recorder(std::move(recorder));
}

Model& DistributedDataParallel::model() { return impl_->model; }
std::vector<torch::Tensor> DistributedDataParallel::parameters() const { return impl_->params; }
const CommunicatorPtr& DistributedDataParallel::communicator() const { return impl_->comm; }
const Reducer& DistributedDataParallel::reducer() const { return *impl_->reducer; }
IterationStats DistributedDataParallel::last_iteration_stats() const { return impl_->stats; }
void DistributedDataParallel::train(bool on) { impl_->model.train(on); }

}  // namespace dpt
