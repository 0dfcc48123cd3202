#pragma once
// The kernel's page cache for a model's files: drop them (for a cold-load timing) and
// see how much of them is cached. Both work unprivileged: POSIX_FADV_DONTNEED drops a
// file's clean pages that no process has mapped, and mincore() reports residency.
#include <cstdint>
#include <string>
#include <vector>

namespace piquant {

// The files behind a model path: the file itself, or every regular file directly inside
// a folder (a Hugging Face checkpoint). Throws Error if the path does not exist.
std::vector<std::string> model_files(const std::string& path);
std::uint64_t total_file_bytes(const std::vector<std::string>& files);

// Asks the kernel to drop the files' cached pages. Throws Error naming a file that
// cannot be opened. Pages still mapped somewhere stay: check with cached_fraction().
void evict_from_page_cache(const std::vector<std::string>& files);

// Fraction (0..1) of the files' pages that are in the page cache now; 0 for empty files.
double cached_fraction(const std::vector<std::string>& files);

}  // namespace piquant
