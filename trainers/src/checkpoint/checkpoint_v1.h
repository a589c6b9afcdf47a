// dptrain's first checkpoint format (checkpoint-<step>.dpt), read so that runs saved before the
// switch to torch.save files still resume (private to checkpoint.cpp):
//   8 bytes  magic "DPTCKPT1"
//   8 bytes  payload size (little-endian uint64)
//   8 bytes  FNV-1a checksum64 of the payload
//   payload  libtorch pickle of a name -> tensor map: "model.<name>", "optimizer" (a torch::serialize
//            archive as uint8), "rng", "rng.<device>/<rank>", "meta" (JSON as uint8).
#pragma once

#include <string>

#include "dptrain/trainers/checkpoint/checkpoint.h"

namespace dpt::checkpoint_v1 {

bool is_v1(const Bytes& bytes);
// Checks the header and checksum (DataError naming `origin`: truncated, corrupt).
void verify(const Bytes& bytes, const std::string& origin);
Checkpoint decode(const Bytes& bytes, const std::string& origin);
// The format's fixed pieces, for tests that need an old file.
Bytes encode_for_tests(const Checkpoint& checkpoint, const Bytes& optimizer_archive);

}  // namespace dpt::checkpoint_v1
