// Recipes: a full one parses into the stages in run order with every value checked; each
// row of the bad-recipe table fails with "FILE:LINE: [table] key: problem" naming the
// line the mistake is on.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "pipeline/recipe.h"
#include "support/test_support.h"

namespace piquant {
namespace {

class Recipe : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(dir_ / "model.gguf", "not read while parsing");
    testing::write_file(dir_ / "text.txt", "some text");
  }
  std::string write(const std::string& text) {
    const auto path = dir_ / "r.toml";
    testing::write_file(path, text);
    return path.string();
  }
  testing::TempDir dir_;
};

TEST_F(Recipe, ParsesEveryStageInRunOrder) {
  const std::string path = write(R"(name = "demo"
model = "model.gguf"
threads = 2
[evaluate]
text = "text.txt"
ctx = 128
[prune]
layers = "1-5"
ratio = 0.25
criterion = "flap"
calib = "text.txt"
[quantize]
recipes = ["Q4_K_M", "Q3_K_M"]
[finetune]
data = "text.txt"
distill = true
lr = 1e-3
steps = 10
[merge]
type = "f16"
[bench]
prompt = [32, 64]
[awq]
text = "text.txt"
for_recipe = "Q3_K_M"
no_importance = true
)");
  const PipelineRecipe r = parse_recipe(path);
  EXPECT_EQ(r.name, "demo");
  EXPECT_EQ(r.threads, 2u);
  EXPECT_EQ(r.model, (dir_.path() / "model.gguf").lexically_normal().string());
  ASSERT_EQ(r.stages.size(), 7u);
  const std::vector<std::string> order = {"prune", "finetune", "merge", "awq", "quantize", "evaluate", "bench"};
  for (std::size_t i = 0; i < order.size(); ++i) EXPECT_EQ(r.stages[i].name, order[i]);
  const StageOptions& prune = *r.stage("prune");
  EXPECT_DOUBLE_EQ(prune.find("ratio")->number, 0.25);
  EXPECT_EQ(prune.find("ratio")->line, 9);
  EXPECT_EQ(prune.text("calib"), (dir_.path() / "text.txt").lexically_normal().string());
  EXPECT_TRUE(r.stage("finetune")->boolean("distill", false));
  EXPECT_EQ(r.stage("finetune")->find("lr")->to_string(), "0.001");
  EXPECT_EQ(r.stage("quantize")->texts("recipes"), (std::vector<std::string>{"Q4_K_M", "Q3_K_M"}));
  EXPECT_EQ(r.stage("bench")->integers("prompt"), (std::vector<std::int64_t>{32, 64}));
  EXPECT_EQ(r.stage("awq")->text("for_recipe"), "Q3_K_M");
  EXPECT_TRUE(r.stage("awq")->boolean("no_importance", false));
  EXPECT_EQ(r.stage("imatrix"), nullptr);
}

TEST_F(Recipe, DefaultsTheNameToTheFileStem) {
  const PipelineRecipe r = parse_recipe(write("model = \"model.gguf\"\n"));
  EXPECT_EQ(r.name, "r");
  EXPECT_TRUE(r.stages.empty());
}

struct BadRecipe {
  const char* what;
  const char* text;
  const char* expected;  // after "r.toml:"
};

TEST_F(Recipe, BadRecipesNameTheFileLineAndKey) {
  const BadRecipe table[] = {
      {"unknown key", "model = \"model.gguf\"\n[prune]\nlayers = \"1-2\"\nratoi = 0.2\n", "4: [prune] ratoi: unknown key"},
      {"unknown stage", "model = \"model.gguf\"\n\n[distil]\nx = 1\n", "3: [distil]: unknown stage"},
      {"unknown top-level key", "model = \"model.gguf\"\nthreds = 2\n", "2: threds: unknown key"},
      {"wrong type", "model = \"model.gguf\"\n[prune]\nlayers = 5\nratio = 0.2\n", "3: [prune] layers: expected a string"},
      {"out of range", "model = \"model.gguf\"\n[prune]\nlayers = \"1-2\"\nratio = 1.5\n", "4: [prune] ratio: 1.5 is out of range"},
      {"not a choice", "model = \"model.gguf\"\n[prune]\nlayers = \"1-2\"\nratio = 0.2\ncriterion = \"random\"\n",
       "5: [prune] criterion: \"random\" is not one of magnitude"},
      {"bad recipe name", "model = \"model.gguf\"\n[quantize]\nrecipes = [\"Q4_K_M\", \"Q5_X\"]\n",
       "3: [quantize] recipes: \"Q5_X\" is not one of"},
      {"missing required", "model = \"model.gguf\"\n[imatrix]\nctx = 128\n", "2: [imatrix] text: missing (required)"},
      {"missing file", "model = \"model.gguf\"\n[evaluate]\ntext = \"nowhere.txt\"\n", "3: [evaluate] text: "},
      {"no model", "threads = 1\n", "1: model: missing"},
      {"model missing on disk", "model = \"gone.gguf\"\n", "1: model: "},
      {"two prune targets", "model = \"model.gguf\"\n[prune]\nlayers = \"1-2\"\nratio = 0.2\ntarget_size_gib = 3.0\n",
       "2: [prune]: give exactly one of"},
      {"merge without finetune", "model = \"model.gguf\"\n[merge]\ntype = \"f16\"\n", "2: [merge]: needs a [finetune] stage or an adapter"},
      {"merge adapter and finetune", "model = \"model.gguf\"\n[finetune]\ndata = \"text.txt\"\n[merge]\nadapter = \"text.txt\"\n",
       "5: [merge] adapter: the recipe also has"},
      {"imatrix without its stage", "model = \"model.gguf\"\n[quantize]\nrecipes = [\"Q4_K_M\"]\nimatrix = true\n",
       "4: [quantize] imatrix: true, but"},
      {"empty list", "model = \"model.gguf\"\n[quantize]\nrecipes = []\n", "3: [quantize] recipes: expected a list"},
      {"negative integer", "model = \"model.gguf\"\n[evaluate]\ntext = \"text.txt\"\nchunks = -1\n",
       "4: [evaluate] chunks: -1 is out of range"},
      {"toml syntax", "model = \"model.gguf\"\n[prune\nlayers = \"1\"\n", "2:"},
  };
  for (const BadRecipe& row : table) {
    const std::string path = write(row.text);
    try {
      parse_recipe(path);
      ADD_FAILURE() << row.what << ": parsed without an error";
    } catch (const Error& e) {
      const std::string message = e.what();
      const std::string expected = path + ":" + row.expected;
      EXPECT_EQ(message.rfind(expected, 0), 0u) << row.what << ": got \"" << message << "\", expected it to start with \""
                                                << expected << "\"";
    }
  }
}

TEST_F(Recipe, ModelOverrideReplacesTheRecipesModel) {
  const std::string path = write("model = \"/nowhere/Llama-3.1-8B\"\n");
  EXPECT_THROW(parse_recipe(path), Error);
  const PipelineRecipe r = parse_recipe(path, (dir_ / "model.gguf").string());
  EXPECT_EQ(r.model, (dir_.path() / "model.gguf").lexically_normal().string());
  EXPECT_THROW(parse_recipe(path, (dir_ / "gone.gguf").string()), Error);
}

TEST_F(Recipe, MissingRecipeFileIsAClearError) {
  try {
    parse_recipe((dir_ / "none.toml").string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.toml: cannot open"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace piquant
