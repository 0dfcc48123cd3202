#pragma once
// A pipeline recipe (TOML): the input model and the stages to run on it, each a table of
// options. Parsing checks every key and value against the stage's schema, so a typo or a
// bad value fails before anything runs, naming the file, the line and the key.
//
//   model = "piquant-default.gguf"        # relative to the recipe's folder, or "shared:PATH"
//   threads = 0                           # 0: one per core
//   [prune]     layers = "1-5"  ratio = 0.25  criterion = "flap"  calib = "shared:corpora/austen.txt"
//   [finetune]  data = "..."  distill = true  steps = 200  ...
//   [merge]     type = "f16"
//   [awq]       text = "..."  ctx = 256  chunks = 16   (the imatrix is then collected on its output)
//   [imatrix]   text = "..."  ctx = 256  chunks = 64
//   [quantize]  recipes = ["Q4_K_M", "Q3_K_M"]
//   [evaluate]  text = "..."  ctx = 256  chunks = 40
//   [bench]     prompt = [64]  gen = 32  reps = 3
//
// Every stage may be left out. Options map one to one onto the `piquant` subcommand that
// runs the stage (`ratio` → `prune --ratio`); recipe_schema() lists them.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace piquant {

enum class OptionKind { String, Path, Integer, Number, Boolean, StringList, IntegerList };

// One key a stage table accepts.
struct OptionSpec {
  std::string key;
  OptionKind kind = OptionKind::String;
  std::string flag;                  // the subcommand's option it becomes; empty: the pipeline reads it
  std::string help;
  std::vector<std::string> choices;  // String / StringList: the values allowed (empty: any)
  std::optional<double> min, max;    // Integer / Number / IntegerList: inclusive bounds
  bool required = false;
};

struct StageSchema {
  std::string name;  // table name, also the run folder's subfolder
  std::string summary;
  std::vector<OptionSpec> options;
};

// The stages in the order they run.
const std::vector<StageSchema>& recipe_schema();
const StageSchema& stage_schema(const std::string& name);

// A value as written in the recipe, checked against its spec. Paths are absolute.
struct OptionValue {
  OptionKind kind = OptionKind::String;
  std::string text;                 // String, Path
  std::int64_t integer = 0;         // Integer, Boolean (0/1)
  double number = 0;                // Number
  std::vector<std::string> texts;   // StringList
  std::vector<std::int64_t> integers;  // IntegerList
  int line = 0;                     // where the recipe says it

  std::string to_string() const;  // canonical form, for the stage's content key and the command line
};

struct StageOptions {
  std::string name;
  std::map<std::string, OptionValue> values;  // only the keys the recipe sets
  int line = 0;

  bool has(const std::string& key) const { return values.count(key) != 0; }
  const OptionValue* find(const std::string& key) const;
  std::string text(const std::string& key, const std::string& fallback = "") const;
  std::int64_t integer(const std::string& key, std::int64_t fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::vector<std::string> texts(const std::string& key) const;
  std::vector<std::int64_t> integers(const std::string& key) const;
};

struct PipelineRecipe {
  std::string path;        // the recipe file
  std::string name;        // `name`, else the file's stem
  std::string model;       // absolute path of the input model (GGUF file or Hugging Face folder)
  unsigned threads = 0;
  std::vector<StageOptions> stages;  // in run order, only those present

  const StageOptions* stage(const std::string& name) const;
};

// Throws Error "FILE:LINE: [table] key: problem" for unknown tables or keys, wrong types,
// values out of range or not among the choices, missing required keys and paths that do
// not exist; "FILE:LINE:COLUMN: ..." for TOML syntax errors. A non-empty `model_override`
// (the CLI's --model) replaces the recipe's `model`, which then need not exist.
PipelineRecipe parse_recipe(const std::string& path, const std::string& model_override = "");
PipelineRecipe parse_recipe_text(const std::string& text, const std::string& path, const std::string& model_override = "");

}  // namespace piquant
