#include "chrome_trace.h"

#include "json_output.h"

namespace dpt::bench {

ChromeTrace::ChromeTrace(int rank, Clock::time_point origin) : rank_(rank), origin_(origin) {}

void ChromeTrace::add(const std::string& name, const std::string& category, Clock::time_point start,
                      Clock::time_point end, int row, nlohmann::json args) {
  add_us(name, category, std::chrono::duration<double, std::micro>(start.time_since_epoch()).count(),
         std::chrono::duration<double, std::micro>(end - start).count(), row, std::move(args));
}

void ChromeTrace::add_us(const std::string& name, const std::string& category, double start_us, double duration_us,
                         int row, nlohmann::json args) {
  const double ts = start_us - std::chrono::duration<double, std::micro>(origin_.time_since_epoch()).count();
  const double dur = duration_us;
  nlohmann::json event = {{"name", name}, {"cat", category}, {"ph", "X"},  {"ts", ts},
                          {"dur", dur},   {"pid", rank_},    {"tid", row}, {"args", std::move(args)}};
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(std::move(event));
}

size_t ChromeTrace::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.size();
}

std::string ChromeTrace::serialize() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.dump();
}

nlohmann::json ChromeTrace::merge(const std::vector<std::string>& per_rank_events) {
  nlohmann::json events = nlohmann::json::array();
  for (size_t rank = 0; rank < per_rank_events.size(); ++rank) {
    const int pid = static_cast<int>(rank);
    events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", "rank " + std::to_string(rank)}}}});
    events.push_back({{"name", "process_sort_index"}, {"ph", "M"}, {"pid", pid}, {"args", {{"sort_index", pid}}}});
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", pid}, {"tid", int(kCompute)}, {"args", {{"name", "compute"}}}});
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", pid}, {"tid", int(kCommunication)},
                      {"args", {{"name", "communication"}}}});
    for (auto& event : nlohmann::json::parse(per_rank_events[rank])) events.push_back(std::move(event));
  }
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
}

void ChromeTrace::write_merged(const std::string& path, const std::vector<std::string>& per_rank_events) {
  write_json(path, merge(per_rank_events));
}

}  // namespace dpt::bench
