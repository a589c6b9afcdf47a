// Partial writes left behind by killed runs. write_file_atomic (serialize.h) writes
// `<name>.tmp.<pid>` and renames it over `<name>`; a process killed in between leaves the
// temporary. Whoever writes next into that directory removes those of processes that are gone.
#pragma once

#include <string>

namespace dpt {

// Removes the `<name>.tmp.<pid>` files of `directory` ("": the current one) whose name starts with
// `prefix` and whose process is gone (write_file_atomic does this for its own file first). Each
// is logged as a warning; returns how many.
int remove_stale_temporaries(const std::string& directory, const std::string& prefix = "");

}  // namespace dpt
