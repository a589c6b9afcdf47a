// DistributedSampler: sharding, padding/truncation, the W*B equivalence, and resume; KeyedPermutation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "dptrain/core/data/distributed_sampler.h"
#include "dptrain/core/data/keyed_permutation.h"
#include "dptrain/core/error.h"

namespace {

std::vector<std::vector<int64_t>> shards(int64_t n, int world, bool shuffle, bool drop_last, int64_t epoch,
                                         uint64_t seed = 7) {
  std::vector<std::vector<int64_t>> out;
  for (int r = 0; r < world; ++r) {
    dpt::DistributedSampler sampler(n, r, world, shuffle, seed, drop_last);
    sampler.set_epoch(epoch);
    out.push_back(sampler.indices());
  }
  return out;
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST(DataSampler, EpochOrderIsAPermutationThatDependsOnSeedAndEpoch) {
  dpt::DistributedSampler a(100, 0, 1, true, 3);
  std::vector<int64_t> identity(100);
  for (int i = 0; i < 100; ++i) identity[i] = i;
  const auto e0 = a.epoch_order();
  EXPECT_EQ(sorted(e0), identity);
  EXPECT_NE(e0, identity);
  a.set_epoch(1);
  EXPECT_NE(a.epoch_order(), e0);
  EXPECT_NE(dpt::DistributedSampler(100, 0, 1, true, 4).epoch_order(), e0);
  // Same (seed, epoch), another rank or world size: the same order.
  dpt::DistributedSampler b(100, 2, 3, true, 3);
  EXPECT_EQ(b.epoch_order(), e0);
  EXPECT_EQ(dpt::DistributedSampler(100, 0, 1, false, 3).epoch_order(), identity);
}

TEST(DataSampler, ShardsAreDisjointAndCoveringWithoutDropLast) {
  for (int64_t n : {1, 7, 10, 23}) {
    for (int world = 1; world <= 5; ++world) {
      for (bool shuffle : {false, true}) {
        const auto parts = shards(n, world, shuffle, false, 2);
        const int64_t per_rank = (n + world - 1) / world;
        std::vector<int64_t> all;
        for (const auto& p : parts) {
          ASSERT_EQ(static_cast<int64_t>(p.size()), per_rank) << "n=" << n << " W=" << world;
          all.insert(all.end(), p.begin(), p.end());
        }
        // Every index is covered; only the padding (total - n entries) repeats.
        std::set<int64_t> distinct(all.begin(), all.end());
        EXPECT_EQ(static_cast<int64_t>(distinct.size()), n) << "n=" << n << " W=" << world;
        EXPECT_EQ(*distinct.begin(), 0);
        EXPECT_EQ(*distinct.rbegin(), n - 1);
        EXPECT_EQ(static_cast<int64_t>(all.size()) - n, per_rank * world - n);
      }
    }
  }
}

TEST(DataSampler, ShardsAreDisjointWithDropLast) {
  for (int64_t n : {1, 7, 10, 23}) {
    for (int world = 1; world <= 5; ++world) {
      const auto parts = shards(n, world, true, true, 0);
      std::vector<int64_t> all;
      for (const auto& p : parts) {
        ASSERT_EQ(static_cast<int64_t>(p.size()), n / world);
        all.insert(all.end(), p.begin(), p.end());
      }
      std::set<int64_t> distinct(all.begin(), all.end());
      EXPECT_EQ(distinct.size(), all.size()) << "a repeated index, n=" << n << " W=" << world;
      EXPECT_EQ(static_cast<int64_t>(all.size()), (n / world) * world);
      // The kept indices are exactly the first floor(n/W)*W of the epoch order.
      dpt::DistributedSampler one(n, 0, 1, true, 7);
      auto order = one.epoch_order();
      order.resize(all.size());
      EXPECT_EQ(sorted(all), sorted(order));
    }
  }
}

// W ranks with batch B see, step by step, what one process with batch W*B sees.
TEST(DataSampler, WRanksWithBatchBSeeTheGlobalBatchesOfWTimesB) {
  for (int64_t n : {24, 30, 37}) {
    for (int world = 1; world <= 5; ++world) {
      for (bool drop_last : {false, true}) {
        const int64_t batch = 3;
        const auto parts = shards(n, world, true, drop_last, 4);
        // The single process: the same epoch order, batch W*B.
        dpt::DistributedSampler single(n, 0, 1, true, 7, false);
        single.set_epoch(4);
        const std::vector<int64_t> global = single.epoch_order();
        const int64_t steps = (static_cast<int64_t>(parts[0].size()) + batch - 1) / batch;
        for (int64_t k = 0; k < steps; ++k) {
          std::vector<int64_t> concatenated;  // rank 0's batch k, then rank 1's, ...
          for (const auto& p : parts) {
            for (int64_t j = k * batch; j < std::min<int64_t>((k + 1) * batch, p.size()); ++j)
              concatenated.push_back(p[j]);
          }
          // With drop_last the order is cut to floor(n/W)*W first.
          const int64_t kept = drop_last ? (n / world) * world : n;
          std::vector<int64_t> expected;
          for (int64_t j = k * world * batch; j < std::min<int64_t>((k + 1) * world * batch, kept); ++j)
            expected.push_back(global[j]);
          if (n % world == 0 || drop_last || (k + 1) * world * batch <= n) {
            EXPECT_EQ(sorted(concatenated), sorted(expected)) << "n=" << n << " W=" << world << " step " << k;
          } else {
            // The last step of a padded epoch: the global batch plus wrapped-around padding.
            std::set<int64_t> seen(concatenated.begin(), concatenated.end());
            for (int64_t e : expected) EXPECT_TRUE(seen.count(e)) << e << " missing at the last step";
          }
        }
      }
    }
  }
}

TEST(DataSampler, ResumeAtTheSameWorldSizeContinuesExactly) {
  const int world = 3;
  for (int r = 0; r < world; ++r) {
    dpt::DistributedSampler full(50, r, world, true, 1);
    full.set_epoch(5);
    const auto all = full.indices();
    const dpt::SamplerState state = full.state_after(6);
    EXPECT_EQ(state.epoch, 5);
    EXPECT_EQ(state.position, 18);
    dpt::DistributedSampler resumed(50, r, world, true, 1);
    resumed.load_state(state);
    resumed.set_epoch(5);  // same epoch: keeps the resume position
    EXPECT_EQ(resumed.indices(), std::vector<int64_t>(all.begin() + 6, all.end()));
    resumed.set_epoch(6);  // a new epoch starts at 0
    EXPECT_EQ(resumed.num_samples(), full.num_samples());
  }
}

TEST(DataSampler, ResumeAtAnotherWorldSizeSkipsNothing) {
  const int64_t n = 41;
  for (int before = 1; before <= 4; ++before) {
    for (int after = 1; after <= 5; ++after) {
      dpt::DistributedSampler first(n, 0, before, true, 9);
      first.set_epoch(2);
      const int64_t consumed = 4;  // per rank, before the restart
      const dpt::SamplerState state = first.state_after(consumed);
      std::vector<int64_t> seen;
      for (int r = 0; r < before; ++r) {
        dpt::DistributedSampler s(n, r, before, true, 9);
        s.set_epoch(2);
        auto idx = s.indices();
        seen.insert(seen.end(), idx.begin(), idx.begin() + consumed);
      }
      std::vector<int64_t> rest;
      for (int r = 0; r < after; ++r) {
        dpt::DistributedSampler s(n, r, after, true, 9);
        s.load_state(state);
        auto idx = s.indices();
        rest.insert(rest.end(), idx.begin(), idx.end());
      }
      // Every sample not seen before the restart is seen after it; anything else is padding.
      std::set<int64_t> before_set(seen.begin(), seen.end());
      std::set<int64_t> unseen;
      for (int64_t i = 0; i < n; ++i) {
        if (!before_set.count(i)) unseen.insert(i);
      }
      std::set<int64_t> after_set(rest.begin(), rest.end());
      for (int64_t i : unseen)
        EXPECT_TRUE(after_set.count(i)) << "sample " << i << " skipped, " << before << "->" << after;
      const int64_t remaining = n - state.position;
      const int64_t padding = ((remaining + after - 1) / after) * after - remaining;
      EXPECT_EQ(static_cast<int64_t>(rest.size()), remaining + padding);
      EXPECT_EQ(static_cast<int64_t>(unseen.size()), remaining);
    }
  }
}

TEST(DataSampler, BadArgumentsAreClearErrors) {
  EXPECT_THROW(dpt::DistributedSampler(10, 2, 2), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::DistributedSampler(10, 0, 0), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::DistributedSampler(-1, 0, 1), dpt::InvalidArgumentError);
  dpt::DistributedSampler s(10, 0, 1);
  EXPECT_THROW(s.load_state({0, 11}), dpt::InvalidArgumentError);
  EXPECT_THROW(s.state_after(11), dpt::InvalidArgumentError);
}

// Reference printed by PyTorch 2.11:
//   s = torch.utils.data.DistributedSampler(list(range(23)), num_replicas=3, rank=r, shuffle=True, seed=7)
//   s.set_epoch(2); print(list(s))
TEST(DataSampler, MatchesPyTorchDistributedSampler) {
  const std::vector<std::vector<int64_t>> pytorch = {
      {12, 20, 13, 16, 2, 1, 10, 18}, {9, 11, 6, 5, 4, 17, 7, 22}, {14, 19, 21, 15, 8, 3, 0, 12}};
  for (int r = 0; r < 3; ++r) {
    dpt::DistributedSampler sampler(23, r, 3, true, 7, false);
    sampler.set_epoch(2);
    EXPECT_EQ(sampler.indices(), pytorch[r]) << "rank " << r;
  }
}

// ---- KeyedPermutation: the computed order of token corpora ------------------------------------

namespace {

std::vector<int64_t> keyed_order(int64_t n, uint64_t seed, int64_t epoch) {
  const dpt::KeyedPermutation permutation(n, seed, epoch);
  std::vector<int64_t> order;
  for (int64_t p = 0; p < n; ++p) order.push_back(permutation(p));
  return order;
}

}  // namespace

TEST(KeyedPermutation, EveryIndexComesExactlyOnceForAnySize) {
  // Sizes around powers of two (even and odd bit counts, the cycle walk's worst case just above one).
  for (const int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 31, 33, 100, 1000, 1025, 4096, 65537}) {
    std::vector<int64_t> order = keyed_order(n, 3, 1);
    std::sort(order.begin(), order.end());
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), int64_t{0});
    EXPECT_EQ(order, all) << "n = " << n;
  }
}

TEST(KeyedPermutation, TheOrderDependsOnSeedAndEpochAndIsTheSameWhenRecomputed) {
  const auto base = keyed_order(1000, 3, 1);
  EXPECT_EQ(keyed_order(1000, 3, 1), base);
  EXPECT_NE(keyed_order(1000, 3, 2), base);
  EXPECT_NE(keyed_order(1000, 4, 1), base);
}

TEST(KeyedPermutation, LooksUniformlyShuffled) {
  // Where position 0 lands, over 20000 (seed, epoch) pairs: each of 10 indices about 2000 times.
  std::vector<int> counts(10, 0);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    for (int64_t epoch = 0; epoch < 100; ++epoch) ++counts[static_cast<size_t>(dpt::KeyedPermutation(10, seed, epoch)(0))];
  }
  for (const int count : counts) EXPECT_NEAR(count, 2000, 200);  // 4.7 sigma of a binomial(20000, 0.1)
  // Neighbouring positions land far apart, and positions do not stay in place.
  const auto order = keyed_order(100000, 0, 0);
  double mean_gap = 0;
  int fixed = 0;
  for (size_t p = 0; p < order.size(); ++p) {
    if (p > 0) mean_gap += std::abs(static_cast<double>(order[p] - order[p - 1])) / static_cast<double>(order.size());
    fixed += order[p] == static_cast<int64_t>(p);
  }
  EXPECT_NEAR(mean_gap / 100000, 1.0 / 3, 0.01);  // |U - V| of two uniforms has mean 1/3
  EXPECT_LT(fixed, 10);                            // a random permutation has 1 on average
}

TEST(KeyedPermutation, BadArgumentsAreClearErrors) {
  EXPECT_THROW(dpt::KeyedPermutation(0, 0, 0), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::KeyedPermutation(5, 0, 0)(5), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::KeyedPermutation(5, 0, 0)(-1), dpt::InvalidArgumentError);
}
