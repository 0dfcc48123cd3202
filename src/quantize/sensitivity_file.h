#pragma once
// Measured sensitivities kept in a JSON file (`quantize --sensitivity FILE`), so that
// planning for another budget does not measure again. The file records what the
// numbers were measured from, as fingerprints (FNV-1a 64, core/fnv1a.h, in hex):
//   model:       every tensor's name, its dimensions (i64) and its values as float32,
//                in the checkpoint's tensor order;
//   imatrix:     every entry's name, ncall (i32) and stored values (float32), by name;
//                "" when quantizing without one;
//   calibration: the chunks' n_ctx and n_chunks (i64), BOS id (i32) and tokens (i32).
// Layout:
//   {"format": "piquant-sensitivity", "version": 1,
//    "model": {"path", "fingerprint"}, "imatrix": {"path", "fingerprint"},
//    "calibration": {"path", "fingerprint", "n_ctx", "n_chunks"},
//    "measure_seconds": S,
//    "kld": {"blk.0.attn_q.weight": {"q4_K": 0.0123, ...}, ...}}
// Numbers are written with enough digits to read back the same doubles.
#include <cstdint>
#include <optional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "eval/eval_chunks.h"
#include "quantize/imatrix_file.h"
#include "quantize/sensitivity.h"

namespace piquant {

struct SensitivitySource {
  std::string model_fingerprint;
  std::string imatrix_fingerprint;      // "" without an imatrix
  std::string calibration_fingerprint;
  std::int64_t n_ctx = 0;
  std::int64_t n_chunks = 0;
  // Where they came from, for a person reading the file (not compared).
  std::string model_path;
  std::string imatrix_path;
  std::string calibration_path;
};

struct SensitivityRecord {
  SensitivitySource source;
  double measure_seconds = 0.0;  // time spent measuring, summed over the runs that added to it
  SensitivityTable table;
};

std::string checkpoint_fingerprint(const Checkpoint& checkpoint);
std::string imatrix_fingerprint(const ImportanceMatrix& imatrix);
std::string calibration_fingerprint(const EvalChunks& chunks);

// Why sensitivities measured from `cached` cannot stand in for `wanted` ("" when they
// can): another model or imatrix; with compare_calibration, another calibration too.
std::string sensitivity_source_mismatch(const SensitivitySource& cached, const SensitivitySource& wanted,
                                        bool compare_calibration);

// nullopt when there is no file at `path`; throws FormatError naming the file and field
// when there is one that is not a sensitivity file of this version.
std::optional<SensitivityRecord> read_sensitivity_file(const std::string& path);
// Writes atomically (core/atomic_file.h).
void write_sensitivity_file(const std::string& path, const SensitivityRecord& record);

}  // namespace piquant
