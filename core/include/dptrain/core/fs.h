// File-system helpers on plain POSIX calls.
//
// Why not std::filesystem: the libtorch of the PyTorch wheels exports its own copies of
// std::filesystem functions (libtorch.so, libtorch_cpu.so), and the dynamic linker binds our calls
// to them. Some crash outright (std::filesystem::remove_all jumps to a null pointer). Everything
// in dptrain that links libtorch uses these helpers instead; do not call std::filesystem.
#pragma once

#include <string>
#include <vector>

namespace dpt::fs {

bool exists(const std::string& path);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
// Like `mkdir -p`; IoError naming the path on failure.
void create_directories(const std::string& path);
// Like `rm -rf`; silent when the path does not exist.
void remove_all(const std::string& path);
// Removes one file; returns false when it did not exist.
bool remove_file(const std::string& path);
// Names (not paths) of the entries of a directory, sorted; IoError when it cannot be read.
std::vector<std::string> list_directory(const std::string& path);
std::string parent_path(const std::string& path);  // "" for a bare file name
std::string file_name(const std::string& path);
std::string join(const std::string& directory, const std::string& name);
// A new directory under $TMPDIR (or /tmp) named prefix-XXXXXX.
std::string make_temp_directory(const std::string& prefix);
// Can a file be created at `path`? Checks the directory exists and is writable (used to find a
// bad --out before training, not after).
bool parent_is_writable(const std::string& path);
// Whether `path` is a writable directory, or can be made one by create_directories (its nearest
// existing ancestor is a writable directory).
bool can_be_created(const std::string& path);

}  // namespace dpt::fs
