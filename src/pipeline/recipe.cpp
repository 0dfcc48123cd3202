#include "pipeline/recipe.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "core/error.h"
#include "core/shared_data.h"

namespace piquant {
namespace {

using K = OptionKind;

OptionSpec opt(std::string key, K kind, std::string flag, std::string help) {
  OptionSpec s;
  s.key = std::move(key);
  s.kind = kind;
  s.flag = std::move(flag);
  s.help = std::move(help);
  return s;
}
OptionSpec choices(OptionSpec s, std::vector<std::string> values) {
  s.choices = std::move(values);
  return s;
}
OptionSpec range(OptionSpec s, std::optional<double> lo, std::optional<double> hi = std::nullopt) {
  s.min = lo;
  s.max = hi;
  return s;
}
OptionSpec required(OptionSpec s) {
  s.required = true;
  return s;
}

const std::vector<std::string> kQuantRecipes = {"Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M",
                                                "Q4_K_S", "Q3_K_M", "Q3_K_S", "Q2_K", "Q4_0"};

std::vector<StageSchema> build_schema() {
  std::vector<StageSchema> stages;
  stages.push_back({"prune", "remove MLP neurons (piquant prune)", {
      required(opt("layers", K::String, "--layers", "layer range, e.g. \"4-27\"")),
      range(opt("ratio", K::Number, "--ratio", "share of the range's neurons removed"), 0.0, 0.99),
      opt("target_params", K::String, "--target-params", "parameter count after pruning, e.g. \"6.97B\""),
      range(opt("target_size_gib", K::Number, "--target-size-gib", "file size after pruning"), 0.0),
      choices(opt("for_recipe", K::String, "--for-recipe", "size target at this recipe's types"), kQuantRecipes),
      choices(opt("criterion", K::String, "--criterion", "importance criterion"),
              {"magnitude", "wanda", "activation", "flap", "taylor"}),
      choices(opt("allocation", K::String, "--allocation", "widths per layer"), {"uniform", "global"}),
      range(opt("align", K::Integer, "--align", "widths are multiples of this"), 1),
      range(opt("min_width", K::Integer, "--min-width", "no layer narrower"), 0),
      choices(opt("bias_compensation", K::String, "--bias-compensation", "ffn_down bias"), {"auto", "on", "off"}),
      opt("calib", K::Path, "--calib", "calibration text"),
      range(opt("calib_tokens", K::Integer, "--calib-tokens", "calibration tokens"), 1),
      range(opt("calib_seq", K::Integer, "--calib-seq", "tokens per calibration sequence"), 2),
  }});
  stages.push_back({"finetune", "recover with a LoRA adapter (piquant finetune)", {
      required(opt("data", K::Path, "--data", "training data: text or alpaca JSON")),
      choices(opt("format", K::String, "--format", "data format"), {"alpaca", "text"}),
      opt("distill", K::Boolean, "", "distil from the unpruned input model"),
      range(opt("ce_weight", K::Number, "--ce-weight", "weight of the cross-entropy loss"), 0.0),
      range(opt("distill_weight", K::Number, "--distill-weight", "weight of the distillation loss"), 0.0),
      range(opt("temperature", K::Number, "--temperature", "distillation temperature"), 0.01),
      range(opt("teacher_top_k", K::Integer, "--teacher-top-k", "teacher logits kept per position"), 1),
      range(opt("lora_r", K::Integer, "--lora-r", "LoRA rank"), 1),
      range(opt("lora_alpha", K::Number, "--lora-alpha", "LoRA alpha"), 0.0),
      range(opt("lora_dropout", K::Number, "--lora-dropout", "dropout on the adapter's inputs"), 0.0, 0.95),
      opt("targets", K::String, "--targets", "adapted weights, from q,k,v,o,gate,up,down"),
      range(opt("max_seq", K::Integer, "--max-seq", "positions per sequence"), 2),
      range(opt("max_records", K::Integer, "--max-records", "alpaca records used (0: all)"), 0),
      range(opt("steps", K::Integer, "--steps", "optimizer steps"), 0),
      range(opt("epochs", K::Number, "--epochs", "passes over the data when steps is 0"), 0.0),
      range(opt("batch", K::Integer, "--batch", "sequences per step"), 1),
      range(opt("lr", K::Number, "--lr", "peak learning rate"), 0.0),
      range(opt("warmup", K::Integer, "--warmup", "warm-up steps"), 0),
      range(opt("min_lr_ratio", K::Number, "--min-lr-ratio", "cosine decay ends at lr x this"), 0.0, 1.0),
      range(opt("weight_decay", K::Number, "--weight-decay", "AdamW weight decay"), 0.0),
      range(opt("clip", K::Number, "--clip", "gradient norm clip (0: off)"), 0.0),
      range(opt("held_out", K::Number, "--held-out", "share of sequences held out"), 0.0, 0.9),
      range(opt("held_out_count", K::Integer, "--held-out-count", "sequences held out"), 0),
      range(opt("eval_every", K::Integer, "--eval-every", "held-out loss every N steps"), 0),
      range(opt("checkpoint_every", K::Integer, "--checkpoint-every", "checkpoint every N steps (resume point)"), 1),
      range(opt("seed", K::Integer, "--seed", "seed of the data order"), 0),
      choices(opt("activations", K::String, "--activations", "keep or recompute activations"), {"auto", "keep", "recompute"}),
  }});
  stages.push_back({"merge", "merge the adapter into the pruned model (piquant merge)", {
      choices(opt("type", K::String, "--type", "weight type of the merged model"), {"f32", "f16", "bf16"}),
      opt("adapter", K::Path, "", "an adapter trained elsewhere (PEFT folder or GGUF) instead of the finetune stage's"),
  }});
  stages.push_back({"awq", "activation-aware scales searched for the quantization, same function (piquant awq)", {
      required(opt("text", K::Path, "-f", "calibration text")),
      range(opt("ctx", K::Integer, "--ctx", "tokens per chunk"), 4),
      range(opt("chunks", K::Integer, "--chunks", "chunks (0: all)"), 0),
      choices(opt("for_recipe", K::String, "--for-recipe", "recipe the scales are searched for (default: [quantize]'s first)"),
              kQuantRecipes),
      range(opt("grid", K::Integer, "--grid", "α grid points"), 1, 1000),
      range(opt("error_tokens", K::Integer, "--error-tokens", "tokens the output error is measured on"), 1),
      opt("no_importance", K::Boolean, "--no-importance", "search for quantize without an imatrix"),
  }});
  stages.push_back({"imatrix", "importance matrix for quantization (piquant imatrix)", {
      required(opt("text", K::Path, "-f", "calibration text")),
      range(opt("ctx", K::Integer, "--ctx", "tokens per chunk"), 4),
      range(opt("chunks", K::Integer, "--chunks", "chunks (0: all)"), 0),
  }});
  stages.push_back({"quantize", "quantize with llama.cpp's recipes (piquant quantize)", {
      required(choices(opt("recipes", K::StringList, "", "recipes, one file each"), kQuantRecipes)),
      opt("imatrix", K::Boolean, "", "use the imatrix stage's matrix (default: when that stage runs)"),
  }});
  stages.push_back({"evaluate", "perplexity and KLD against the input model (piquant kld)", {
      required(opt("text", K::Path, "-f", "held-out evaluation text")),
      range(opt("ctx", K::Integer, "--ctx", "tokens per chunk"), 4),
      range(opt("chunks", K::Integer, "--chunks", "chunks (0: all)"), 0),
  }});
  stages.push_back({"bench", "deployment speed (piquant bench) and the Raspberry Pi 4 projection", {
      range(opt("prompt", K::IntegerList, "", "prompt lengths"), 1),
      range(opt("gen", K::Integer, "", "tokens decoded"), 1),
      range(opt("reps", K::Integer, "", "repetitions"), 1),
      opt("variants", K::StringList, "", "variants benchmarked (default: every quantized one)"),
  }});
  return stages;
}

const char* kind_name(OptionKind kind) {
  switch (kind) {
    case K::String: return "a string";
    case K::Path: return "a path (string)";
    case K::Integer: return "an integer";
    case K::Number: return "a number";
    case K::Boolean: return "true or false";
    case K::StringList: return "a list of strings";
    case K::IntegerList: return "a list of integers";
  }
  return "?";
}

class RecipeParser {
 public:
  explicit RecipeParser(std::string path) : path_(std::move(path)) {
    base_dir_ = std::filesystem::absolute(path_).parent_path();
  }

  [[noreturn]] void fail(int line, const std::string& where, const std::string& problem) const {
    throw Error(path_ + ":" + std::to_string(line) + ": " + where + ": " + problem);
  }

  std::string resolve_path(const std::string& value, int line, const std::string& where) const {
    if (value.empty()) fail(line, where, "empty path");
    std::filesystem::path p;
    if (value.rfind("shared:", 0) == 0) {
      try {
        p = find_shared_file(value.substr(7));
      } catch (const Error& e) {
        fail(line, where, e.what());
      }
    } else {
      p = std::filesystem::path(value);
      if (p.is_relative()) p = base_dir_ / p;
    }
    p = p.lexically_normal();
    if (!std::filesystem::exists(p)) fail(line, where, p.string() + " does not exist");
    return p.string();
  }

  OptionValue read_value(const toml::node& node, const OptionSpec& spec, const std::string& where) const {
    OptionValue v;
    v.kind = spec.kind;
    v.line = static_cast<int>(node.source().begin.line);
    const auto bad_type = [&] { fail(v.line, where, std::string("expected ") + kind_name(spec.kind)); };
    const auto check_choice = [&](const std::string& s) {
      if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
        std::string list;
        for (const auto& c : spec.choices) list += (list.empty() ? "" : ", ") + c;
        fail(v.line, where, "\"" + s + "\" is not one of " + list);
      }
    };
    const auto check_range = [&](double x) {
      if ((spec.min && x < *spec.min) || (spec.max && x > *spec.max) || !std::isfinite(x)) {
        std::ostringstream os;
        os << x << " is out of range";
        if (spec.min) os << " (at least " << *spec.min;
        if (spec.max) os << (spec.min ? ", " : " (") << "at most " << *spec.max;
        if (spec.min || spec.max) os << ")";
        fail(v.line, where, os.str());
      }
    };
    switch (spec.kind) {
      case K::String:
      case K::Path:
        if (!node.is_string()) bad_type();
        v.text = *node.value<std::string>();
        if (spec.kind == K::Path) v.text = resolve_path(v.text, v.line, where);
        check_choice(v.text);
        break;
      case K::Integer:
        if (!node.is_integer()) bad_type();
        v.integer = *node.value<std::int64_t>();
        check_range(static_cast<double>(v.integer));
        break;
      case K::Number:
        if (!node.is_number()) bad_type();
        v.number = *node.value<double>();
        check_range(v.number);
        break;
      case K::Boolean:
        if (!node.is_boolean()) bad_type();
        v.integer = *node.value<bool>() ? 1 : 0;
        break;
      case K::StringList:
      case K::IntegerList: {
        const toml::array* array = node.as_array();
        if (array == nullptr || array->empty()) fail(v.line, where, std::string("expected ") + kind_name(spec.kind) + " (not empty)");
        for (const toml::node& item : *array) {
          if (spec.kind == K::StringList) {
            if (!item.is_string()) bad_type();
            v.texts.push_back(*item.value<std::string>());
            check_choice(v.texts.back());
          } else {
            if (!item.is_integer()) bad_type();
            v.integers.push_back(*item.value<std::int64_t>());
            check_range(static_cast<double>(v.integers.back()));
          }
        }
        break;
      }
    }
    return v;
  }

  PipelineRecipe parse(const std::string& text, const std::string& model_override) {
    toml::table root;
    try {
      root = toml::parse(text, path_);
    } catch (const toml::parse_error& e) {
      throw Error(path_ + ":" + std::to_string(e.source().begin.line) + ":" + std::to_string(e.source().begin.column) +
                  ": " + std::string(e.description()));
    }
    PipelineRecipe recipe;
    recipe.path = path_;
    recipe.name = std::filesystem::path(path_).stem().string();
    bool have_model = false;
    for (auto&& [key, node] : root) {
      const std::string k(key.str());
      const int line = static_cast<int>(key.source().begin.line);
      if (node.is_table()) {
        const auto& schema = recipe_schema();
        const bool known = std::any_of(schema.begin(), schema.end(), [&](const StageSchema& s) { return s.name == k; });
        if (!known) fail(line, "[" + k + "]", "unknown stage (stages: prune, finetune, merge, awq, imatrix, quantize, evaluate, bench)");
        continue;  // read below, in run order
      }
      if (k == "name") {
        if (!node.is_string()) fail(line, k, "expected a string");
        recipe.name = *node.value<std::string>();
      } else if (k == "model") {
        if (!node.is_string()) fail(line, k, "expected a path (string)");
        if (model_override.empty()) recipe.model = resolve_path(*node.value<std::string>(), line, k);
        have_model = true;
      } else if (k == "threads") {
        if (!node.is_integer() || *node.value<std::int64_t>() < 0) fail(line, k, "expected an integer >= 0");
        recipe.threads = static_cast<unsigned>(*node.value<std::int64_t>());
      } else {
        fail(line, k, "unknown key (top level: name, model, threads, and the stage tables)");
      }
    }
    if (!model_override.empty()) {
      if (!std::filesystem::exists(model_override)) throw Error(model_override + ": no such model (--model)");
      recipe.model = std::filesystem::absolute(model_override).lexically_normal().string();
      have_model = true;
    }
    if (!have_model) fail(1, "model", "missing: the input model (a .gguf file or a Hugging Face folder)");

    for (const StageSchema& schema : recipe_schema()) {
      const toml::node* node = root.get(schema.name);
      if (node == nullptr) continue;
      const toml::table& table = *node->as_table();
      StageOptions stage;
      stage.name = schema.name;
      stage.line = static_cast<int>(table.source().begin.line);
      for (auto&& [key, value] : table) {
        const std::string k(key.str());
        const std::string where = "[" + schema.name + "] " + k;
        const auto spec = std::find_if(schema.options.begin(), schema.options.end(),
                                       [&](const OptionSpec& s) { return s.key == k; });
        if (spec == schema.options.end()) {
          std::string list;
          for (const auto& s : schema.options) list += (list.empty() ? "" : ", ") + s.key;
          fail(static_cast<int>(key.source().begin.line), where, "unknown key (known: " + list + ")");
        }
        stage.values[k] = read_value(value, *spec, where);
      }
      for (const auto& spec : schema.options) {
        if (spec.required && !stage.has(spec.key)) fail(stage.line, "[" + schema.name + "] " + spec.key, "missing (required)");
      }
      recipe.stages.push_back(std::move(stage));
    }
    check_stages(recipe);
    return recipe;
  }

  // Combinations the schema alone cannot express.
  void check_stages(const PipelineRecipe& recipe) const {
    if (const StageOptions* prune = recipe.stage("prune")) {
      const int targets = prune->has("ratio") + prune->has("target_params") + prune->has("target_size_gib");
      if (targets != 1) fail(prune->line, "[prune]", "give exactly one of ratio, target_params, target_size_gib");
    }
    if (const StageOptions* merge = recipe.stage("merge")) {
      if (recipe.stage("finetune") == nullptr && !merge->has("adapter")) {
        fail(merge->line, "[merge]", "needs a [finetune] stage or an adapter = \"PATH\" trained elsewhere");
      }
      if (recipe.stage("finetune") != nullptr && merge->has("adapter")) {
        fail(merge->find("adapter")->line, "[merge] adapter", "the recipe also has a [finetune] stage: merge one or the other");
      }
    }
    if (const StageOptions* q = recipe.stage("quantize")) {
      if (q->boolean("imatrix", false) && recipe.stage("imatrix") == nullptr) {
        fail(q->find("imatrix")->line, "[quantize] imatrix", "true, but the recipe has no [imatrix] stage");
      }
    }
  }

 private:
  std::string path_;
  std::filesystem::path base_dir_;
};

}  // namespace

const std::vector<StageSchema>& recipe_schema() {
  static const std::vector<StageSchema> schema = build_schema();
  return schema;
}

const StageSchema& stage_schema(const std::string& name) {
  for (const auto& s : recipe_schema()) {
    if (s.name == name) return s;
  }
  throw Error("pipeline: no stage named " + name);
}

std::string OptionValue::to_string() const {
  std::ostringstream os;
  switch (kind) {
    case K::String:
    case K::Path: return text;
    case K::Integer: return std::to_string(integer);
    case K::Boolean: return integer ? "true" : "false";
    case K::Number:
      os.precision(17);
      os << number;
      return os.str();
    case K::StringList:
      for (std::size_t i = 0; i < texts.size(); ++i) os << (i ? "," : "") << texts[i];
      return os.str();
    case K::IntegerList:
      for (std::size_t i = 0; i < integers.size(); ++i) os << (i ? "," : "") << integers[i];
      return os.str();
  }
  return "";
}

const OptionValue* StageOptions::find(const std::string& key) const {
  const auto it = values.find(key);
  return it == values.end() ? nullptr : &it->second;
}
std::string StageOptions::text(const std::string& key, const std::string& fallback) const {
  const OptionValue* v = find(key);
  return v ? v->text : fallback;
}
std::int64_t StageOptions::integer(const std::string& key, std::int64_t fallback) const {
  const OptionValue* v = find(key);
  return v ? v->integer : fallback;
}
bool StageOptions::boolean(const std::string& key, bool fallback) const {
  const OptionValue* v = find(key);
  return v ? v->integer != 0 : fallback;
}
std::vector<std::string> StageOptions::texts(const std::string& key) const {
  const OptionValue* v = find(key);
  return v ? v->texts : std::vector<std::string>{};
}
std::vector<std::int64_t> StageOptions::integers(const std::string& key) const {
  const OptionValue* v = find(key);
  return v ? v->integers : std::vector<std::int64_t>{};
}

const StageOptions* PipelineRecipe::stage(const std::string& name) const {
  for (const auto& s : stages) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

PipelineRecipe parse_recipe_text(const std::string& text, const std::string& path, const std::string& model_override) {
  return RecipeParser(path).parse(text, model_override);
}

PipelineRecipe parse_recipe(const std::string& path, const std::string& model_override) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the recipe");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_recipe_text(text.str(), path, model_override);
}

}  // namespace piquant
