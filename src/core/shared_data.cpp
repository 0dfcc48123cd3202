#include "core/shared_data.h"

#include <cstdlib>
#include <vector>

#include "core/error.h"

namespace piquant {

std::filesystem::path find_shared_file(const std::string& relative) {
  namespace fs = std::filesystem;
  std::vector<fs::path> roots;
  if (const char* env = std::getenv("PIQUANT_SHARED"); env != nullptr && *env != '\0') roots.emplace_back(env);
  std::error_code ec;
  // Walk up from the working directory and from the executable looking for shared/.
  for (fs::path dir : {fs::current_path(ec), fs::read_symlink("/proc/self/exe", ec).parent_path()}) {
    for (int up = 0; up < 6 && !dir.empty(); ++up, dir = dir.parent_path()) {
      roots.push_back(dir / "shared");
      roots.push_back(dir / ".." / "shared");
      if (dir == dir.parent_path()) break;
    }
  }
  std::string tried;
  for (const auto& root : roots) {
    const fs::path candidate = root / relative;
    if (fs::exists(candidate, ec)) return fs::weakly_canonical(candidate, ec);
    if (tried.size() < 400) tried += "\n  " + candidate.string();
  }
  throw Error("cannot find shared data file '" + relative + "' (set PIQUANT_SHARED); tried:" + tried);
}

}  // namespace piquant
