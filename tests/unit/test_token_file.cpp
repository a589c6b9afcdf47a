// Token corpora (train.bin): windows against slices of the array written, each dtype meta.json
// names, and one error per kind of bad file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "dptrain/core/data/token_file.h"
#include "dptrain/core/error.h"
#include "test_support.h"

namespace {

template <typename T>
void write_tokens(const std::string& path, const std::vector<T>& tokens) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * sizeof(T)));
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// This process's resident kB of its mappings of `path` (/proc/self/smaps: a header line per mapping
// ending in its file, then "Rss:     N kB" among its fields).
int64_t resident_kb_of(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  int64_t kb = 0;
  while (std::getline(smaps, line)) {
    const bool header = line.find('-') < line.find(' ') && line.find(':') > line.find(' ');
    if (header) inside = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    if (inside && line.rfind("Rss:", 0) == 0) kb += std::stoll(line.substr(4));
  }
  return kb;
}

using dpt::testing::error_of;

TEST(TokenFile, WindowsAreTheArraySlicedAndShiftedByOne) {
  dpt::testing::TempDir dir;
  std::vector<uint16_t> tokens(103);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(60000 + 7 * i % 1000);
  write_tokens(dir.file("train.bin"), tokens);
  dpt::TokenWindows windows(dir.file("train.bin"), 10, dpt::read_token_meta(dir.path()));
  ASSERT_EQ(windows.size(), 10);  // (103 - 1) / 10: the last token only as a target
  EXPECT_EQ(windows.tokens(), 103);
  auto all = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()));
  for (int64_t i : {0, 4, 9}) {
    auto example = windows.get(i);
    EXPECT_TRUE(torch::equal(example.input.tensor(), all.slice(0, i * 10, i * 10 + 10))) << i;
    EXPECT_TRUE(torch::equal(example.target.tensor(), all.slice(0, i * 10 + 1, i * 10 + 11))) << i;
    EXPECT_EQ(example.input.tensor().scalar_type(), torch::kInt64);
  }
  // Read again after its pages were handed back: the same tokens.
  EXPECT_TRUE(torch::equal(windows.get(4).input.tensor(), all.slice(0, 40, 50)));
  EXPECT_EQ(windows.vocab_size(), all.max().item<int64_t>() + 1);  // no meta.json: the largest id + 1
}

TEST(TokenFile, MetaJsonNamesTheDtypeAndTheVocabulary) {
  dpt::testing::TempDir dir;
  write_tokens(dir.file("train.bin"), std::vector<int32_t>{5, 70000, 3, 9, 1});
  write_text(dir.file("meta.json"), R"({"dtype": "int32", "vocab_size": 70001})");
  dpt::TokenWindows windows(dir.file("train.bin"), 2, dpt::read_token_meta(dir.path()));
  EXPECT_EQ(windows.size(), 2);
  EXPECT_EQ(windows.vocab_size(), 70001);
  EXPECT_TRUE(torch::equal(windows.get(0).target.tensor(), torch::tensor({70000, 3}, torch::kInt64)));
  write_text(dir.file("meta.json"), R"({"dtype": "int32", "vocab_size": 10})");
  dpt::TokenWindows small(dir.file("train.bin"), 2, dpt::read_token_meta(dir.path()));
  EXPECT_NE(error_of([&] { small.get(0); }).find("token id 70000 at position 1 is outside [0, 10)"), std::string::npos);
}

TEST(TokenFile, ReadingTheCorpusLeavesNoneOfItResident) {
  // 8 MB of tokens, windows of 257 tokens (514 bytes: smaller than a page, so most pages are shared by
  // neighbouring windows): after some windows have been read, after all of them, and after the
  // vocabulary scan, the rank holds at most a page or two of the file (the page cache keeps it; the
  // process does not).
  dpt::testing::TempDir dir;
  std::vector<uint16_t> tokens(int64_t{1} << 22);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 50000);
  write_tokens(dir.file("train.bin"), tokens);
  dpt::TokenWindows windows(dir.file("train.bin"), 256, dpt::read_token_meta(dir.path()));
  EXPECT_EQ(windows.vocab_size(), 50000);
  EXPECT_LE(resident_kb_of(dir.file("train.bin")), 8);
  // A third of the windows in a permuted order, as an epoch reads them (each fault maps the cached
  // pages around the window too: 1.5 MiB stayed resident while only the window's pages were
  // released), then all of them.
  std::vector<int64_t> order(static_cast<size_t>(windows.size()));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(0));
  int64_t sum = 0;
  for (size_t i = 0; i < order.size() / 3; ++i) sum += windows.get(order[i]).input.tensor()[0].item<int64_t>();
  EXPECT_LE(resident_kb_of(dir.file("train.bin")), 8);
  for (int64_t i = 0; i < windows.size(); ++i) sum += windows.get(i).target.tensor()[0].item<int64_t>();
  EXPECT_GT(sum, 0);
  EXPECT_LE(resident_kb_of(dir.file("train.bin")), 8);
  // The probe can fail: the same file mapped and read here, page by page, is resident.
  const int fd = ::open(dir.file("train.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const size_t bytes = tokens.size() * sizeof(uint16_t);
  auto* map = static_cast<volatile const unsigned char*>(::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0));
  ::close(fd);
  ASSERT_NE(static_cast<const volatile void*>(map), MAP_FAILED);
  unsigned touched = 0;
  for (size_t at = 0; at < bytes; at += 4096) touched += map[at];
  EXPECT_GE(resident_kb_of(dir.file("train.bin")), static_cast<int64_t>(bytes / 1024 / 2)) << touched;
  ::munmap(const_cast<unsigned char*>(map), bytes);
}

TEST(TokenFile, BadFilesAreOneErrorNamingThem) {
  dpt::testing::TempDir dir;
  write_text(dir.file("meta.json"), R"({"dtype": "float16"})");
  EXPECT_NE(error_of([&] { dpt::read_token_meta(dir.path()); }).find("dtype \"float16\" is not uint16, uint32 or int32"),
            std::string::npos);
  write_text(dir.file("meta.json"), "{not json");
  EXPECT_NE(error_of([&] { dpt::read_token_meta(dir.path()); }).find("meta.json: not JSON"), std::string::npos);
  write_text(dir.file("odd.bin"), "abc");
  EXPECT_NE(error_of([&] { dpt::TokenWindows(dir.file("odd.bin"), 1, {}); })
                .find("3 bytes is not a whole number of uint16 tokens"),
            std::string::npos);
  write_tokens(dir.file("short.bin"), std::vector<uint16_t>{1, 2, 3});
  EXPECT_NE(error_of([&] { dpt::TokenWindows(dir.file("short.bin"), 4, {}); }).find("3 tokens, fewer than one window"),
            std::string::npos);
  EXPECT_NE(error_of([&] { dpt::TokenWindows(dir.file("missing.bin"), 4, {}); }).find("missing.bin: cannot open"),
            std::string::npos);
}

}  // namespace
