// A tokenized text corpus as nanoGPT and many language-model codebases write it: DIR/train.bin
// (and DIR/val.bin), one flat array of token ids, and an optional DIR/meta.json:
//
//   {"dtype": "uint16", "vocab_size": 50304}     // dtype: uint16 (the default), uint32 or int32
//
// TokenWindows cuts a file into non-overlapping windows of `context` tokens; example i is
//   input  = tokens[i*context     .. i*context + context)      int64 [context]
//   target = tokens[i*context + 1 .. i*context + context + 1)  int64 [context] (the next token)
// so (tokens - 1) / context examples. The file is memory-mapped: opening it reads nothing, and
// reading a window touches only its pages, which are handed back to the kernel afterwards, so a
// rank's resident memory stays bounded whatever the corpus size (each rank reads only the windows
// the sampler deals it). get() is safe from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "dptrain/core/data/dataset.h"

namespace dpt {

struct TokenFileMeta {
  std::string dtype = "uint16";
  std::optional<int64_t> vocab_size;
};

// DIR/meta.json when it exists (defaults otherwise); DataError naming the file for bad JSON, an
// unknown dtype or a vocab_size that is not a positive integer.
TokenFileMeta read_token_meta(const std::string& directory);

class TokenWindows final : public Dataset {
 public:
  // DataError naming `path` when its size is not a multiple of the dtype's, or when it holds fewer
  // than context + 1 tokens; InvalidArgumentError for context < 1.
  TokenWindows(std::string path, int64_t context, TokenFileMeta meta);
  ~TokenWindows() override;
  TokenWindows(const TokenWindows&) = delete;
  TokenWindows& operator=(const TokenWindows&) = delete;

  int64_t size() const override { return windows_; }
  // DataError naming the file and the position of a token id outside [0, vocab_size).
  Example get(int64_t index) const override;

  const std::string& path() const { return path_; }
  int64_t tokens() const { return tokens_; }
  int64_t context() const { return context_; }
  const TokenFileMeta& meta() const { return meta_; }
  // meta.json's vocab_size, else the largest id in the file + 1 (one pass over it, done once).
  int64_t vocab_size() const;

 private:
  int64_t token_at(int64_t position) const;
  // Unmaps the pages holding tokens [first_token, first_token + count) (they stay in the page cache).
  void release(int64_t first_token, int64_t count) const;

  std::string path_;
  int64_t context_;
  TokenFileMeta meta_;
  int element_size_ = 2;
  int64_t tokens_ = 0;
  int64_t windows_ = 0;
  const unsigned char* map_ = nullptr;
  size_t bytes_ = 0;
  mutable std::optional<int64_t> scanned_vocab_;
};

}  // namespace dpt
