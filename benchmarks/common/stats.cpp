#include "stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dpt::bench {

double percentile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double position = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<size_t>(std::floor(position));
  const auto upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = position - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Stats summarize(std::vector<double> samples) {
  Stats stats;
  if (samples.empty()) return stats;
  std::sort(samples.begin(), samples.end());
  stats.count = static_cast<int>(samples.size());
  stats.median = percentile_sorted(samples, 50);
  stats.p10 = percentile_sorted(samples, 10);
  stats.p90 = percentile_sorted(samples, 90);
  stats.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  stats.min = samples.front();
  stats.max = samples.back();
  return stats;
}

nlohmann::json to_json(const Stats& stats) {
  return {{"count", stats.count}, {"median", stats.median}, {"p10", stats.p10}, {"p90", stats.p90},
          {"mean", stats.mean},   {"min", stats.min},       {"max", stats.max}};
}

}  // namespace dpt::bench
