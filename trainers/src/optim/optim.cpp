#include "dptrain/trainers/optim/optim.h"

#include <algorithm>
#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/core/strings.h"
#include "optim/foreach_sgd.h"

namespace dpt {
namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd", "adam", "adamw"};
  return names;
}

const std::vector<std::string>& lr_schedule_names() {
  static const std::vector<std::string> names = {"constant", "step", "cosine"};
  return names;
}

void validate(const OptimizerOptions& o) {
  DPT_CHECK(contains(optimizer_names(), o.name()), InvalidArgumentError, "--optimizer: unknown optimizer '",
            o.name(), "' (choose one of: ", joined(optimizer_names()), ")");
  DPT_CHECK(std::isfinite(o.lr()) && o.lr() > 0, InvalidArgumentError, "--lr must be a positive number, got ",
            o.lr());
  DPT_CHECK(std::isfinite(o.momentum()) && o.momentum() >= 0 && o.momentum() < 1, InvalidArgumentError,
            "--momentum must be in [0, 1), got ", o.momentum());
  DPT_CHECK(std::isfinite(o.weight_decay()) && o.weight_decay() >= 0, InvalidArgumentError,
            "--weight-decay must be >= 0, got ", o.weight_decay());
  DPT_CHECK(o.beta1() >= 0 && o.beta1() < 1 && o.beta2() >= 0 && o.beta2() < 1, InvalidArgumentError,
            "Adam betas must be in [0, 1), got ", o.beta1(), ", ", o.beta2());
  DPT_CHECK(o.eps() > 0, InvalidArgumentError, "Adam eps must be positive, got ", o.eps());
  DPT_CHECK(!o.nesterov() || o.momentum() > 0, InvalidArgumentError, "--nesterov needs --momentum > 0");
}

namespace {

// The groups of make_optimizer: all parameters with the options' weight decay, or (decays given)
// the decayed ones first and the others with a weight decay of 0.
template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> param_groups(const std::vector<torch::Tensor>& parameters,
                                                             const std::vector<bool>& decays,
                                                             const Options& options) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (decays.empty()) {
    groups.emplace_back(parameters, std::make_unique<Options>(options));
    return groups;
  }
  DPT_CHECK(decays.size() == parameters.size(), InternalError, "make_optimizer: ", decays.size(),
            " weight decay flags for ", parameters.size(), " parameters");
  std::vector<torch::Tensor> decayed, exempt;
  for (size_t i = 0; i < parameters.size(); ++i) (decays[i] ? decayed : exempt).push_back(parameters[i]);
  Options without = options;
  without.weight_decay(0.0);
  groups.emplace_back(decayed, std::make_unique<Options>(options));
  groups.emplace_back(exempt, std::make_unique<Options>(without));
  return groups;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& parameters,
                                                        const OptimizerOptions& o, const std::vector<bool>& decays) {
  validate(o);
  DPT_CHECK(!parameters.empty(), InvalidArgumentError, "the model has no trainable parameters");
  if (o.name() == "sgd") {
    const auto options =
        torch::optim::SGDOptions(o.lr()).momentum(o.momentum()).weight_decay(o.weight_decay()).nesterov(o.nesterov());
    return std::make_unique<ForeachSGD>(param_groups(parameters, decays, options), options);
  }
  if (o.name() == "adam") {
    const auto options =
        torch::optim::AdamOptions(o.lr()).betas({o.beta1(), o.beta2()}).eps(o.eps()).weight_decay(o.weight_decay());
    return std::make_unique<torch::optim::Adam>(param_groups(parameters, decays, options), options);
  }
  const auto options =
      torch::optim::AdamWOptions(o.lr()).betas({o.beta1(), o.beta2()}).eps(o.eps()).weight_decay(o.weight_decay());
  return std::make_unique<torch::optim::AdamW>(param_groups(parameters, decays, options), options);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

void validate(const LrScheduleOptions& o) {
  DPT_CHECK(contains(lr_schedule_names(), o.kind()), InvalidArgumentError, "--lr-schedule: unknown schedule '",
            o.kind(), "' (choose one of: ", joined(lr_schedule_names()), ")");
  DPT_CHECK(o.step_size() > 0, InvalidArgumentError, "--lr-step-size must be > 0, got ", o.step_size());
  DPT_CHECK(std::isfinite(o.gamma()) && o.gamma() > 0, InvalidArgumentError, "--lr-gamma must be > 0, got ",
            o.gamma());
  DPT_CHECK(std::isfinite(o.min_lr()) && o.min_lr() >= 0, InvalidArgumentError, "--min-lr must be >= 0, got ",
            o.min_lr());
  DPT_CHECK(o.warmup_steps() >= 0, InvalidArgumentError, "--warmup-steps must be >= 0, got ", o.warmup_steps());
  DPT_CHECK(o.warmup_start_factor() > 0 && o.warmup_start_factor() <= 1, InvalidArgumentError,
            "warmup start factor must be in (0, 1], got ", o.warmup_start_factor());
}

LrSchedule::LrSchedule(LrScheduleOptions options, double base_lr, int64_t total_steps)
    : options_(std::move(options)), base_lr_(base_lr), total_steps_(std::max<int64_t>(total_steps, 1)) {
  validate(options_);
}

double LrSchedule::lr_at(int64_t step) const {
  const auto& o = options_;
  double lr = base_lr_;
  int64_t after_warmup = step - o.warmup_steps();
  if (o.kind() == "step") {
    lr = base_lr_ * std::pow(o.gamma(), static_cast<double>(std::max<int64_t>(step, 0) / o.step_size()));
  } else if (o.kind() == "cosine") {
    int64_t length = std::max<int64_t>(total_steps_ - o.warmup_steps(), 1);
    double progress = std::clamp(static_cast<double>(std::max<int64_t>(after_warmup, 0)) / length, 0.0, 1.0);
    lr = o.min_lr() + (base_lr_ - o.min_lr()) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  if (step < o.warmup_steps()) {
    double fraction = static_cast<double>(step) / static_cast<double>(o.warmup_steps());
    lr *= o.warmup_start_factor() + (1.0 - o.warmup_start_factor()) * fraction;
  }
  return lr;
}

c10::IValue LrSchedule::state_dict() const {
  c10::impl::GenericDict out(c10::StringType::get(), c10::AnyType::get());
  out.insert("kind", options_.kind());
  out.insert("base_lr", base_lr_);
  out.insert("total_steps", total_steps_);
  out.insert("step_size", options_.step_size());
  out.insert("gamma", options_.gamma());
  out.insert("min_lr", options_.min_lr());
  out.insert("warmup_steps", options_.warmup_steps());
  out.insert("warmup_start_factor", options_.warmup_start_factor());
  return out;
}

}  // namespace dpt
