// gguf_export_layout: the size of the file export_gguf writes, known before writing it.
#include "checkpoint/gguf_export.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "formats/gguf.h"
#include "quantize/recipe.h"
#include "support/model_fixtures.h"

namespace piquant {
namespace {

TEST(ExportLayout, PredictsTheWrittenFileByteForByte) {
  testing::TempDir dir;
  // MLP widths 96 and 160: rows that fall back to Q4_0/Q5_x, so tensors of odd sizes.
  const auto hf = testing::write_tiny_hf(dir, "hf", "96,160,256,512", 0.1f);
  const auto checkpoint = open_checkpoint(hf.string());
  std::vector<GgufExportOptions> plans(4);
  plans[0].type = GgmlType::F16;
  for (const char* recipe : {"Q4_K_M", "Q2_K"}) {
    const QuantPlan plan = plan_quantization(quant_recipe(recipe), checkpoint->params(), checkpoint->tensors());
    GgufExportOptions& o = recipe[1] == '4' ? plans[1] : plans[2];
    o.type_for = [plan](const CheckpointTensor& t) { return plan.find(t.name)->type; };
    o.file_type = plan.recipe.file_type;
  }
  // Q5_1 everywhere (rows of 96 and 160 included).
  plans[3].type_for = [](const CheckpointTensor& t) { return t.shape.size() == 1 ? GgmlType::F32 : GgmlType::Q5_1; };
  plans[3].file_type = LlamaFileType::MostlyQ5_1;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const GgufExportLayout layout = gguf_export_layout(*checkpoint, plans[i]);
    const std::string path = (dir / (std::to_string(i) + "-tiny.gguf")).string();
    const GgufExportSummary written = export_gguf(*checkpoint, path, plans[i]);
    EXPECT_EQ(layout.file_bytes, std::filesystem::file_size(path)) << "plan " << i;
    EXPECT_EQ(layout.tensor_bytes, written.tensor_bytes) << "plan " << i;
    const GgufFile file(path);
    EXPECT_EQ(layout.data_offset, file.data_offset()) << "plan " << i;
    EXPECT_EQ(layout.alignment, file.alignment());
  }
  // The header holds the same bytes whatever the types.
  EXPECT_EQ(gguf_export_layout(*checkpoint, plans[1]).data_offset, gguf_export_layout(*checkpoint, plans[3]).data_offset);
}

TEST(ExportLayout, CountsThePaddingOfOddSizedTensors) {
  // stories260K: dim 64, MLP 172, so tensors whose bytes are not multiples of 32.
  const auto bin = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  testing::TempDir dir;
  CheckpointOptions open_options;
  open_options.tokenizer_path = tok.string();
  const auto checkpoint = open_checkpoint(bin.string(), open_options);
  for (const char* recipe : {"Q4_K_M", "Q8_0"}) {
    const QuantPlan plan = plan_quantization(quant_recipe(recipe), checkpoint->params(), checkpoint->tensors());
    GgufExportOptions o;
    o.type_for = [&plan](const CheckpointTensor& t) { return plan.find(t.name)->type; };
    o.file_type = plan.recipe.file_type;
    bool odd = false;
    for (const PlannedTensor& t : plan.tensors) odd = odd || t.n_bytes() % 32 != 0;
    EXPECT_TRUE(odd) << recipe;
    const std::string path = (dir / (std::string(recipe) + ".gguf")).string();
    export_gguf(*checkpoint, path, o);
    EXPECT_EQ(gguf_export_layout(*checkpoint, o).file_bytes, std::filesystem::file_size(path)) << recipe;
  }
}

}  // namespace
}  // namespace piquant
