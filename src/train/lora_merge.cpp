#include "train/lora_merge.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "train/lora_files.h"

namespace piquant {

LoraMergedCheckpoint::LoraMergedCheckpoint(const Checkpoint& base, const LoraAdapter& adapter, unsigned n_threads)
    : ForwardingCheckpoint(base),
      adapter_(std::make_unique<LoraAdapter>(with_layout(adapter, base.params(), RopePairing::Interleaved))),
      pool_(std::make_unique<ThreadPool>(n_threads)) {
  for (const WeightId id : adapter_->ids()) {
    const LoraMatrix& m = *adapter_->find(id);
    const std::string name = gguf_tensor_name(id);
    const CheckpointTensor* t = base.find(name);
    if (t == nullptr) {
      throw Error(base.path() + ": the LoRA adapter changes " + name + ", which the base model does not have" +
                  (id.kind == WeightKind::Output ? " (its output is tied to the token embedding)" : ""));
    }
    if (t->shape != std::vector<std::int64_t>{m.cols, m.rows}) {
      throw Error(base.path() + ": " + name + " is " + std::to_string(t->n_rows()) + " × " + std::to_string(t->row_length()) +
                  ", the LoRA adapter's update " + std::to_string(m.rows) + " × " + std::to_string(m.cols));
    }
  }
}

LoraMergedCheckpoint::~LoraMergedCheckpoint() = default;

void LoraMergedCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows,
                                     float* out) const {
  base_.read_rows(tensor, first_row, n_rows, out);
  const LoraMatrix* m = tensor.shape.size() == 2 ? adapter_->find(tensor.id) : nullptr;
  if (m == nullptr) return;
  const std::int64_t cols = m->cols;
  const std::int64_t rank = m->rank;
  const double scale = adapter_->scale();
  pool_->parallel_for(n_rows, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<double> delta(static_cast<std::size_t>(cols));
    for (std::int64_t i = begin; i < end; ++i) {
      const float* b = m->b.data() + (first_row + i) * rank;
      std::fill(delta.begin(), delta.end(), 0.0);
      for (std::int64_t k = 0; k < rank; ++k) {
        const double bk = b[k];
        const float* a = m->a.data() + k * cols;
        for (std::int64_t c = 0; c < cols; ++c) delta[static_cast<std::size_t>(c)] += bk * static_cast<double>(a[c]);
      }
      float* row = out + i * cols;
      for (std::int64_t c = 0; c < cols; ++c) {
        row[c] = static_cast<float>(static_cast<double>(row[c]) + scale * delta[static_cast<std::size_t>(c)]);
      }
    }
  });
}

std::unique_ptr<Checkpoint> open_merge_base(const std::string& path, const CheckpointOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::string(magic, 4) == "GGUF") {
      const GgufFile file(path);
      for (const GgufTensorInfo& t : file.tensors()) {
        if (t.type != GgmlType::F32 && t.type != GgmlType::F16 && t.type != GgmlType::BF16) {
          throw Error(path + ": the base model is quantized (" + t.name + " is " + ggml_type_name(t.type) +
                      "); a LoRA adapter is merged into a float model (F32, F16 or BF16): merge into the model it was "
                      "quantized from, then quantize the merged model");
        }
      }
    }
  }
  return open_checkpoint(path, options);
}

LoraMergeSummary merge_lora(const std::string& base_path, const std::string& adapter_path, const std::string& out_path,
                            const GgufExportOptions& options, const CheckpointOptions& checkpoint_options) {
  if (options.type_for) throw Error("merge_lora: the merged model is written as one float type (options.type)");
  if (options.type != GgmlType::F32 && options.type != GgmlType::F16 && options.type != GgmlType::BF16) {
    throw Error("merge writes f32, f16 or bf16, not " + ggml_type_name(options.type) + " (quantize the merged model afterwards)");
  }
  const auto base = open_merge_base(base_path, checkpoint_options);
  LoraMergeSummary summary;
  summary.adapter_format = lora_file_format(adapter_path);
  const LoraAdapter adapter = read_lora(adapter_path, base->params(), RopePairing::Interleaved);
  summary.adapted_tensors = adapter.size();
  summary.rank = adapter.rank();
  summary.alpha = adapter.alpha();
  const LoraMergedCheckpoint merged(*base, adapter, options.n_threads);
  summary.exported = export_gguf(merged, out_path, options);
  return summary;
}

}  // namespace piquant
