#include "dptrain/parallel/ddp/ddp_consistency.h"

#include <algorithm>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/serialize.h"

namespace dpt {
namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

// True when every rank holds the same text; one allgather of a hash.
bool all_equal(Communicator& comm, const std::string& text) {
  if (comm.size() == 1) return true;
  const auto hash = static_cast<int64_t>(checksum64(text.data(), text.size()));
  auto mine = torch::full({1}, hash, torch::dtype(torch::kInt64).device(comm.device()));
  auto all = torch::empty({comm.size()}, mine.options());
  comm.allgather(mine, all);
  all = all.cpu();
  return (all == all[0]).all().item<bool>();
}

std::vector<std::vector<std::string>> gather_lines(Communicator& comm, const std::vector<std::string>& lines) {
  const std::string text = join_lines(lines);
  auto gathered = comm.allgather_bytes(Bytes(text.begin(), text.end()));
  std::vector<std::vector<std::string>> result;
  for (const auto& bytes : gathered) {
    std::vector<std::string> rank_lines;
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    for (std::string line; std::getline(in, line);) rank_lines.push_back(line);
    result.push_back(std::move(rank_lines));
  }
  return result;
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += (i ? "," : "") + std::to_string(ranks[i]);
  return text;
}

// "index 3: ranks 0,2 have 'fc.weight float32 [10, 20]', rank 1 has 'fc.weight float32 [10, 21]'"
std::string first_difference(const std::vector<std::vector<std::string>>& all) {
  size_t longest = 0;
  for (const auto& lines : all) longest = std::max(longest, lines.size());
  for (size_t i = 0; i < longest; ++i) {
    std::vector<std::pair<std::string, std::vector<int>>> versions;
    for (size_t rank = 0; rank < all.size(); ++rank) {
      std::string line = i < all[rank].size() ? "'" + all[rank][i] + "'" : "nothing (list ends)";
      auto it = std::find_if(versions.begin(), versions.end(), [&](const auto& v) { return v.first == line; });
      if (it == versions.end()) versions.push_back({line, {static_cast<int>(rank)}});
      else it->second.push_back(static_cast<int>(rank));
    }
    if (versions.size() > 1) {
      std::string text = "entry " + std::to_string(i) + ": ";
      for (size_t v = 0; v < versions.size(); ++v) {
        text += (v ? "; " : "") + ranks_text(versions[v].second) + " " +
                (versions[v].second.size() == 1 ? "has " : "have ") + versions[v].first;
      }
      return text;
    }
  }
  return "the lists hash differently but compare equal";
}

}  // namespace

void check_same_on_all_ranks(Communicator& comm, const std::vector<std::string>& lines, const std::string& what) {
  if (all_equal(comm, join_lines(lines))) return;
  DPT_THROW(ModelError, what, " differ between ranks (rank ", comm.rank(), " reporting), first difference at ",
            first_difference(gather_lines(comm, lines)));
}

void check_next_collective(Communicator& comm, const std::string& description) {
  if (all_equal(comm, description)) return;
  DPT_THROW(CommunicationError, "DPTRAIN_DEBUG=DETAIL: ranks are about to run different collectives (rank ",
            comm.rank(), " reporting): ", first_difference(gather_lines(comm, {description})));
}

}  // namespace dpt
