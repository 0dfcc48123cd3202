#pragma once
// Importance matrices in llama.cpp's legacy binary imatrix format (the .dat that
// llama-imatrix writes and llama-quantize --imatrix reads). All integers are
// little-endian int32, floats are IEEE float32:
//
//   n_entries
//   n_entries times:  name_length, name bytes (no terminator),
//                     ncall, nval, values[nval]
//   trailer (optional: older files end after the entries):
//                     last_chunk, dataset_length, dataset bytes
//
// What a value means: for each input column j of a weight matrix, llama-imatrix
// accumulates sum(x_j^2) over the tokens it saw and counts the tokens; it stores
// (sum / count) * ncall, i.e. the per-token mean of x_j^2 multiplied by ncall (the
// number of chunks that contributed). A reader divides by ncall again (when
// ncall > 0) to get the mean x^2 per column, which is what the quantizers weigh
// each column's error by. ImportanceMatrix keeps the stored values verbatim so
// that a file round-trips byte for byte; mean_squares() does the division.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace piquant {

struct ImportanceMatrix {
  struct Entry {
    std::int32_t ncall = 0;
    std::vector<float> values;  // as stored: mean x^2 per column times ncall
  };

  std::map<std::string, Entry> entries;  // by GGUF tensor name, "blk.0.attn_q.weight"
  std::string dataset;                   // the text file the statistics came from
  std::int32_t chunks = 0;               // chunks processed (llama-imatrix's last chunk count)

  // Per-column mean of x^2 for a tensor (values / ncall); empty when the tensor has no entry.
  std::vector<float> mean_squares(const std::string& tensor_name) const;
  bool contains(const std::string& tensor_name) const { return entries.count(tensor_name) != 0; }
};

// Reads a legacy imatrix file; throws FormatError naming the file and the entry
// (by index and name) on a truncated file, a negative or absurd length or count,
// or a non-finite or negative value.
ImportanceMatrix read_imatrix_file(const std::string& path);

// Writes the legacy format with the trailer, atomically. Throws Error when an
// entry cannot be represented (empty name, too many values, non-finite value).
void write_imatrix_file(const std::string& path, const ImportanceMatrix& matrix);

}  // namespace piquant
