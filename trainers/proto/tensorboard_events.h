// The protobuf side of TensorBoard event files: serialized tensorboard.Event messages. Compiled
// apart from everything that sees libtorch (trainers/CMakeLists.txt): libtorch's include directory
// carries an older protobuf's headers, which must never meet Debian's in one translation unit.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dpt::tensorboard_events {

// The first event of every file: file_version "brain.Event:2".
std::string file_version_event(double wall_time);
// One event with a scalar summary value per (tag, value).
std::string scalars_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, double>>& scalars);

}  // namespace dpt::tensorboard_events
