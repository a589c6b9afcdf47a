#include "preprocessing.h"

#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/strings.h"

namespace dpt::cli {
namespace {

constexpr const char* kImageSize = "dptrain_image_size";
constexpr const char* kImageMean = "dptrain_image_mean";
constexpr const char* kImageStd = "dptrain_image_std";

void set_attribute(torch::jit::Module& module, const std::string& name, const c10::TypePtr& type,
                   const c10::IValue& value) {
  if (module.hasattr(name)) {
    module.setattr(name, value);
  } else {
    module.register_attribute(name, type, value);
  }
}

// As the options take them: --mean 0.5,0.5,0.5
std::string option_list(const std::vector<double>& values) { return joined(values, ","); }

std::vector<double> doubles(const c10::IValue& value) {
  std::vector<double> out;
  for (const auto& item : value.toListRef()) out.push_back(item.toDouble());
  return out;
}

}  // namespace

void save_preprocessing(torch::jit::Module& module, const DataOptions& data) {
  if (detect_data(data.directory) != DataKind::ImageFolder) return;
  set_attribute(module, kImageSize, c10::IntType::get(), data.images.image_size);
  set_attribute(module, kImageMean, c10::ListType::ofFloats(), c10::List<double>(data.images.mean));
  set_attribute(module, kImageStd, c10::ListType::ofFloats(), c10::List<double>(data.images.std));
}

void apply_saved_preprocessing(Model& model, const CommonArgs& common, DataOptions& data) {
  if (!model.is_torchscript() || detect_data(data.directory) != DataKind::ImageFolder) return;
  auto& module = model.torchscript();
  if (!module.hasattr(kImageSize) || !module.hasattr(kImageMean) || !module.hasattr(kImageStd)) return;
  const int64_t size = module.attr(kImageSize).toInt();
  const std::vector<double> mean = doubles(module.attr(kImageMean));
  const std::vector<double> std = doubles(module.attr(kImageStd));
  const std::string trained =
      detail::concat(" (", common.model, " was trained with --image-size ", size, " --mean '", option_list(mean), "' --std '",
             option_list(std), "'; leave the option out to use the model's)");
  DPT_CHECK(common.image_size == 0 || common.image_size == size, InvalidArgumentError, "--image-size ",
            common.image_size, " differs from the model's", trained);
  DPT_CHECK(common.mean.empty() || common.mean == mean, InvalidArgumentError, "--mean ", option_list(common.mean),
            " differs from the model's", trained);
  DPT_CHECK(common.std.empty() || common.std == std, InvalidArgumentError, "--std ", option_list(common.std),
            " differs from the model's", trained);
  data.images.image_size = size;
  data.images.mean = mean;
  data.images.std = std;
  DPT_LOG_INFO("image preprocessing saved with {}: --image-size {} --mean '{}' --std '{}'", common.model, size,
               option_list(mean), option_list(std));
}

}  // namespace dpt::cli
