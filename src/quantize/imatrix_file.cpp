#include "quantize/imatrix_file.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace piquant {
namespace {

// Longer names than this are corruption, not tensor names (ggml allows 64 bytes).
constexpr std::int32_t kMaxNameLength = 4096;
// Smallest possible entry: name length, one name byte, ncall, nval.
constexpr std::uint64_t kMinEntryBytes = 13;

// Reads the file front to back, checking every length against what is left.
class Cursor {
 public:
  explicit Cursor(const MappedFile& file) : file_(file) {}

  std::uint64_t remaining() const { return file_.size() - offset_; }

  std::int32_t i32(const std::string& what) {
    std::int32_t v;
    std::memcpy(&v, file_.bytes(offset_, sizeof v, what + " (file truncated)").data(), sizeof v);
    offset_ += sizeof v;
    return v;
  }

  std::string text(std::uint64_t n, const std::string& what) {
    const auto b = file_.bytes(offset_, n, what + " (file truncated)");
    offset_ += n;
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }

  std::vector<float> floats(std::uint64_t n, const std::string& what) {
    const auto b = file_.bytes(offset_, n * sizeof(float), what + " (file truncated)");
    std::vector<float> out(n);
    if (n) std::memcpy(out.data(), b.data(), b.size());
    offset_ += b.size();
    return out;
  }

 private:
  const MappedFile& file_;
  std::uint64_t offset_ = 0;
};

std::string entry_label(std::int32_t index, const std::string& name) {
  std::string label = "entry " + std::to_string(index);
  if (!name.empty()) label += " (" + name + ")";
  return label;
}

void put_i32(AtomicFileWriter& out, std::int32_t v) { out.write(&v, sizeof v); }

std::int32_t checked_i32(std::uint64_t n, const std::string& path, const std::string& what) {
  if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max())) {
    throw Error(path + ": " + what + ": " + std::to_string(n) + " does not fit the format's int32");
  }
  return static_cast<std::int32_t>(n);
}

}  // namespace

std::vector<float> ImportanceMatrix::mean_squares(const std::string& tensor_name) const {
  const auto it = entries.find(tensor_name);
  if (it == entries.end()) return {};
  std::vector<float> out = it->second.values;
  if (it->second.ncall > 0) {
    const float ncall = static_cast<float>(it->second.ncall);
    for (float& v : out) v /= ncall;
  }
  return out;
}

ImportanceMatrix read_imatrix_file(const std::string& path) {
  const MappedFile file(path);
  Cursor in(file);
  ImportanceMatrix m;

  const std::int32_t n_entries = in.i32("n_entries");
  if (n_entries < 1) throw FormatError(path, "n_entries", std::to_string(n_entries) + " (must be at least 1)");
  if (static_cast<std::uint64_t>(n_entries) > in.remaining() / kMinEntryBytes) {
    throw FormatError(path, "n_entries",
                      std::to_string(n_entries) + " entries cannot fit in " + std::to_string(file.size()) + " bytes");
  }

  for (std::int32_t e = 0; e < n_entries; ++e) {
    const std::string at = entry_label(e, "");
    const std::int32_t name_length = in.i32(at + ": name length");
    if (name_length < 1 || name_length > kMaxNameLength) {
      throw FormatError(path, at + ": name length", std::to_string(name_length) + " is not in 1.." +
                                                        std::to_string(kMaxNameLength));
    }
    const std::string name = in.text(static_cast<std::uint64_t>(name_length), at + ": name");
    const std::string label = entry_label(e, name);
    if (m.entries.count(name)) throw FormatError(path, label, "tensor appears twice");

    ImportanceMatrix::Entry entry;
    entry.ncall = in.i32(label + ": ncall");
    if (entry.ncall < 0) throw FormatError(path, label + ": ncall", std::to_string(entry.ncall) + " is negative");
    const std::int32_t nval = in.i32(label + ": nval");
    if (nval < 0) throw FormatError(path, label + ": nval", std::to_string(nval) + " is negative");
    if (static_cast<std::uint64_t>(nval) > in.remaining() / sizeof(float)) {
      throw FormatError(path, label + ": nval",
                        std::to_string(nval) + " values need more than the " + std::to_string(in.remaining()) +
                            " bytes left in the file");
    }
    entry.values = in.floats(static_cast<std::uint64_t>(nval), label + ": values");
    for (std::size_t j = 0; j < entry.values.size(); ++j) {
      const float v = entry.values[j];
      if (!std::isfinite(v) || v < 0) {
        throw FormatError(path, label + ": value " + std::to_string(j),
                          std::to_string(v) + " is not a finite non-negative mean square");
      }
    }
    m.entries.emplace(name, std::move(entry));
  }

  // Trailer: older llama-imatrix versions wrote none, or only the chunk count.
  if (in.remaining() > 0) {
    m.chunks = in.i32("trailer: chunk count");
    if (m.chunks < 0) throw FormatError(path, "trailer: chunk count", std::to_string(m.chunks) + " is negative");
  }
  if (in.remaining() > 0) {
    const std::int32_t length = in.i32("trailer: dataset name length");
    if (length < 0 || static_cast<std::uint64_t>(length) > in.remaining()) {
      throw FormatError(path, "trailer: dataset name length",
                        std::to_string(length) + " with " + std::to_string(in.remaining()) + " bytes left");
    }
    m.dataset = in.text(static_cast<std::uint64_t>(length), "trailer: dataset name");
  }
  if (in.remaining() > 0) {
    throw FormatError(path, "trailer", std::to_string(in.remaining()) + " unexpected bytes after the dataset name");
  }
  return m;
}

void write_imatrix_file(const std::string& path, const ImportanceMatrix& matrix) {
  if (matrix.entries.empty()) throw Error(path + ": an imatrix file needs at least one entry");
  if (matrix.chunks < 0) throw Error(path + ": chunk count " + std::to_string(matrix.chunks) + " is negative");
  for (const auto& [name, entry] : matrix.entries) {
    if (name.empty() || name.size() > static_cast<std::size_t>(kMaxNameLength)) {
      throw Error(path + ": entry '" + name + "': name length " + std::to_string(name.size()) + " is not in 1.." +
                  std::to_string(kMaxNameLength));
    }
    if (entry.ncall < 0) throw Error(path + ": entry " + name + ": ncall " + std::to_string(entry.ncall) + " is negative");
    for (float v : entry.values) {
      if (!std::isfinite(v) || v < 0) {
        throw Error(path + ": entry " + name + ": value " + std::to_string(v) + " is not a finite non-negative mean square");
      }
    }
  }

  AtomicFileWriter out(path);
  put_i32(out, checked_i32(matrix.entries.size(), path, "n_entries"));
  for (const auto& [name, entry] : matrix.entries) {
    put_i32(out, static_cast<std::int32_t>(name.size()));
    out.write(name.data(), name.size());
    put_i32(out, entry.ncall);
    put_i32(out, checked_i32(entry.values.size(), path, "entry " + name + ": nval"));
    if (!entry.values.empty()) out.write(entry.values.data(), entry.values.size() * sizeof(float));
  }
  put_i32(out, matrix.chunks);
  put_i32(out, checked_i32(matrix.dataset.size(), path, "dataset name length"));
  if (!matrix.dataset.empty()) out.write(matrix.dataset.data(), matrix.dataset.size());
  out.commit();
}

}  // namespace piquant
