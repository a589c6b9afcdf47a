#include "json_output.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"

namespace dpt::bench {

void write_json(const std::string& path, const nlohmann::json& document) {
  if (path.empty()) return;
  if (path == "-") {
    std::cout << document.dump(2) << std::endl;
    return;
  }
  DPT_CHECK(dpt::fs::parent_is_writable(path), IoError, "--json ", path, ": its directory does not exist or is not writable");
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary);
    DPT_CHECK(out.good(), IoError, "cannot write ", temporary);
    out << document.dump(2) << '\n';
    out.close();
    DPT_CHECK(!out.fail(), IoError, "cannot write ", temporary, " (disk full?)");
  }
  DPT_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, IoError, "cannot rename ", temporary, " to ", path);
}

}  // namespace dpt::bench
