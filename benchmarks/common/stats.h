// Summary statistics of repeated timings: what every benchmark reports for every measurement.
//
// The median is the headline number (robust to the one iteration the OS preempted); p10/p90 show
// the spread. Percentiles use linear interpolation between order statistics (numpy's default), so
// the p90 of 10 samples is not simply the 9th one.
#pragma once

#include <nlohmann/json.hpp>

#include <vector>

namespace dpt::bench {

struct Stats {
  int count = 0;
  double median = 0;
  double p10 = 0;
  double p90 = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
};

// Stats of `samples` (any unit). An empty vector gives all zeros with count 0.
Stats summarize(std::vector<double> samples);
// Linear-interpolated percentile, q in [0, 100], of sorted samples.
double percentile_sorted(const std::vector<double>& sorted, double q);

nlohmann::json to_json(const Stats& stats);

}  // namespace dpt::bench
