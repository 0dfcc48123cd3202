#pragma once
// A training checkpoint: named F32 tensors (LoRA A/B or full weights, AdamW moments,
// whatever the trainer keeps) plus string metadata (step, optimizer step, data position,
// RNG state, the run's settings as JSON), in ONE file that appears under its final name
// only when complete (written to "<path>.partial", fsynced, renamed).
//
// File format: a safetensors file (readable by the `safetensors` Python package):
//   u64 N (little-endian), N bytes of JSON header (space-padded to a multiple of 8),
//   then the data section: every tensor's F32 values, row-major, little-endian, packed
//   in the order the tensors were added (header "data_offsets" are relative to the
//   byte after the header).
// The header's "__metadata__" holds the TrainState's meta entries plus three of the format's:
//   "piquant.format"    = "train_state"
//   "piquant.version"   = "1"
//   "piquant.checksum"  = 16 lowercase hex digits: FNV-1a 64 (offset basis
//       0xcbf29ce484222325, prime 0x100000001b3) over, first, every other metadata entry
//       in ascending byte order of the keys, each as key bytes, 0x00, value bytes, 0x00;
//       then every byte of the data section (from 8 + N to the end of the file).
// In Python:  h = 0xcbf29ce484222325; for b in bytes: h = ((h ^ b) * 0x100000001b3) % 2**64
//
// Keys starting with "piquant." are the format's; a TrainState may not set them.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace piquant {

struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;  // row-major: shape.back() is contiguous; {} is a scalar
  std::vector<float> data;          // product of shape values
};

struct TrainState {
  std::map<std::string, std::string> meta;
  std::vector<NamedTensor> tensors;
  std::string source;  // the file it was read from (names it in errors); "" when built in memory

  // Metadata. Integers are decimal (optional '-', no '+', no spaces); doubles are the
  // shortest text that reads back to the same double (std::to_chars).
  void set(const std::string& key, std::string value);
  void set_int(const std::string& key, std::int64_t value);
  void set_u64(const std::string& key, std::uint64_t value);
  void set_double(const std::string& key, double value);
  // Throw FormatError(source, "metadata '<key>'", "missing" / "... is not an integer" ...).
  const std::string& get(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  std::uint64_t get_u64(const std::string& key) const;
  double get_double(const std::string& key) const;

  // Tensors. add() appends a zero-filled tensor (Error if the name is taken); the reference
  // it returns is invalidated by the next add().
  NamedTensor& add(const std::string& name, std::vector<std::int64_t> shape);
  const NamedTensor* find(const std::string& name) const;
  // The tensor `name`, which must have exactly `shape`: FormatError(source, "tensor '<name>'",
  // "missing" / "shape [a, b], expected [c, d]") otherwise.
  const NamedTensor& tensor(const std::string& name, const std::vector<std::int64_t>& shape) const;

  // A resume's check that the run's settings did not change: meta[key] and `settings`
  // must both be JSON and equal. Throws Error naming the file and listing each
  // top-level key that differs with both values ("lr: 0.0001 in the checkpoint, 0.0002 now").
  void check_settings(const std::string& key, const std::string& settings_json) const;
};

// Writes `state` to `path`, which must end in ".safetensors" (its folder is created).
// Throws Error for a reserved or empty key, a duplicate or empty tensor name, a tensor whose
// data size is not its shape's product.
void write_train_state(const TrainState& state, const std::string& path);

// Reads and validates a train-state file: safetensors structure, the three format keys,
// the checksum, every tensor F32. Throws FormatError naming the file and the problem
// (truncated, checksum mismatch, not a train state, wrong version, wrong dtype). The
// result's meta holds the entries other than the format's; tensors are in file order.
TrainState read_train_state(const std::string& path);

}  // namespace piquant
