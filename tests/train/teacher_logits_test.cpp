#include "train/teacher_logits.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "engine/llama_context.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "core/split_mix64.h"

namespace piquant {
namespace {

using testing::TempDir;

// The reference top-k, independent of teacher_top_k's selection: a stable sort of all ids
// by logit, descending (so ties keep ascending ids), and lse_tau as a plain long double sum.
struct Reference {
  std::vector<std::int32_t> ids;
  std::vector<float> logits;
  long double lse = 0;
};

Reference reference_top_k(std::span<const float> logits, int k, double tau) {
  std::vector<std::int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  Reference r;
  for (int i = 0; i < k; ++i) {
    r.ids.push_back(order[i]);
    r.logits.push_back(logits[order[i]]);
  }
  long double sum = 0;
  for (const float l : logits) sum += std::exp(static_cast<long double>(l) / tau);
  r.lse = std::log(sum);
  return r;
}

std::uint64_t fnv(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

TrainingExample example_of(std::vector<std::int32_t> tokens) {
  TrainingExample e;
  e.loss_mask.assign(tokens.empty() ? 0 : tokens.size() - 1, 1);
  e.tokens = std::move(tokens);
  return e;
}

constexpr std::int64_t kVocab = 40;
constexpr int kK = 6;
constexpr double kTau = 0.7;

std::vector<TrainingExample> small_sequences() {
  return {example_of({1, 5, 9, 2, 7}), example_of({3}), example_of({4, 4, 8, 0})};  // 4, 0 and 3 positions
}

// Logits on a grid of 0.5, so that ties are common and their order is exercised.
std::vector<float> small_logits(std::uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> logits(kVocab);
  for (auto& l : logits) l = 0.5f * static_cast<float>(rng.below(16)) - 3.0f;
  return logits;
}

std::string write_small_file(const TempDir& dir) {
  const auto sequences = small_sequences();
  const std::string path = (dir / "teacher.topk").string();
  TeacherLogitsWriter writer(path, kVocab, kK, kTau, sequences);
  std::vector<std::int32_t> ids(kK);
  std::vector<float> top(kK);
  for (std::uint64_t r = 0; r < 7; ++r) {
    const double lse = teacher_top_k(small_logits(r), kK, kTau, ids, top);
    writer.write_position(lse, ids, top);
  }
  writer.commit();
  return path;
}

TEST(TeacherLogits, TopKAndLseMatchTheReferenceWithTies) {
  std::vector<std::int32_t> ids(kK);
  std::vector<float> top(kK);
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const auto logits = small_logits(seed);
    const double lse = teacher_top_k(logits, kK, kTau, ids, top);
    const Reference ref = reference_top_k(logits, kK, kTau);
    EXPECT_EQ(ids, ref.ids) << "seed " << seed;
    EXPECT_EQ(top, ref.logits) << "seed " << seed;
    EXPECT_NEAR(lse, static_cast<double>(ref.lse), 1e-13);
  }
  // Large logits: the max is subtracted before exp, so nothing overflows.
  std::vector<float> big(kVocab, 800.0f);
  big[3] = 900.0f;
  const double lse = teacher_top_k(big, kK, 1.0, ids, top);
  EXPECT_NEAR(lse, 900.0 + std::log1p(39 * std::exp(-100.0)), 1e-12);
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 0);  // ties: ascending id
  std::vector<float> bad = small_logits(1);
  bad[7] = NAN;
  EXPECT_THROW(teacher_top_k(bad, kK, kTau, ids, top), Error);
  EXPECT_THROW(teacher_top_k(small_logits(1), 0, kTau, ids, top), Error);
  EXPECT_THROW(teacher_top_k(small_logits(1), kK, 0.0, ids, top), Error);
}

TEST(TeacherLogits, RoundTripFollowsTheDocumentedLayout) {
  const TempDir dir;
  const std::string path = write_small_file(dir);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  const TeacherLogitsFile file(path);
  EXPECT_EQ(file.n_vocab(), kVocab);
  EXPECT_EQ(file.k(), kK);
  EXPECT_EQ(file.tau(), kTau);
  EXPECT_EQ(file.n_sequences(), 3);
  EXPECT_EQ(file.n_positions(), 7);
  EXPECT_EQ(file.n_positions(1), 0);
  const std::int64_t first_record[] = {0, 4, 4};
  for (std::int64_t s = 0; s < 3; ++s) {
    for (std::int64_t t = 0; t < file.n_positions(s); ++t) {
      const auto logits = small_logits(static_cast<std::uint64_t>(first_record[s] + t));
      const Reference ref = reference_top_k(logits, kK, kTau);
      const auto rec = file.at(s, t);
      EXPECT_TRUE(std::equal(rec.ids.begin(), rec.ids.end(), ref.ids.begin()));
      EXPECT_TRUE(std::equal(rec.logits.begin(), rec.logits.end(), ref.logits.begin()));
      EXPECT_NEAR(rec.lse_tau, static_cast<double>(ref.lse), 1e-13);
    }
  }
  EXPECT_THROW(file.at(1, 0), Error);
  EXPECT_THROW(file.at(0, 4), Error);
  EXPECT_THROW(file.at(3, 0), Error);

  // The bytes, read by hand from the header comment's layout.
  const std::string bytes = testing::read_file(path);
  const auto u64_at = [&](std::size_t offset) {
    std::uint64_t v;
    std::memcpy(&v, bytes.data() + offset, 8);
    return v;
  };
  EXPECT_EQ(bytes.substr(0, 8), "PQTEACHK");
  EXPECT_EQ(u64_at(8), 1u | (static_cast<std::uint64_t>(kK) << 32));  // version, k
  EXPECT_EQ(u64_at(16), static_cast<std::uint64_t>(kVocab));
  double tau;
  std::memcpy(&tau, bytes.data() + 24, 8);
  EXPECT_EQ(tau, kTau);
  EXPECT_EQ(u64_at(32), 3u);
  EXPECT_EQ(u64_at(40), 7u);
  std::uint64_t fingerprint = 0xcbf29ce484222325ull;
  for (const auto& s : small_sequences()) {
    const std::uint64_t n = s.tokens.size();
    fingerprint = fnv(fingerprint, &n, 8);
    fingerprint = fnv(fingerprint, s.tokens.data(), 4 * n);
  }
  EXPECT_EQ(u64_at(48), fingerprint);
  EXPECT_EQ(file.fingerprint(), fingerprint);
  EXPECT_EQ(u64_at(56), 0u);
  EXPECT_EQ(u64_at(64), 0u);
  EXPECT_EQ(u64_at(72), 4u);
  EXPECT_EQ(u64_at(80), 4u);
  EXPECT_EQ(u64_at(88), 7u);
  const std::size_t record = 8 + 8 * kK;
  ASSERT_EQ(bytes.size(), 96 + 7 * record + 8);
  const Reference ref5 = reference_top_k(small_logits(5), kK, kTau);  // record 5: sequence 2, position 1
  std::int32_t id;
  float logit;
  std::memcpy(&id, bytes.data() + 96 + 5 * record + 8 + 4 * 2, 4);
  std::memcpy(&logit, bytes.data() + 96 + 5 * record + 8 + 4 * kK + 4 * 2, 4);
  EXPECT_EQ(id, ref5.ids[2]);
  EXPECT_EQ(logit, ref5.logits[2]);
  EXPECT_EQ(u64_at(bytes.size() - 8), fnv(0xcbf29ce484222325ull, bytes.data(), bytes.size() - 8));
}

TEST(TeacherLogits, FileIsRefusedForOtherData) {
  const TempDir dir;
  const TeacherLogitsFile file(write_small_file(dir));
  auto same = small_sequences();
  EXPECT_NO_THROW(file.check_matches(same, kVocab));
  const auto expect_error = [&](const std::vector<TrainingExample>& data, std::int64_t n_vocab, const std::string& part) {
    try {
      file.check_matches(data, n_vocab);
      ADD_FAILURE() << "no error for " << part;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(file.path()), std::string::npos) << message;
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  };
  expect_error(same, kVocab + 1, "vocabulary of 40 tokens");
  auto fewer = same;
  fewer.pop_back();
  expect_error(fewer, kVocab, "computed on 3 sequences, the training data has 2");
  auto longer = same;
  longer[2] = example_of({4, 4, 8, 0, 1});
  expect_error(longer, kVocab, "sequence 2 has 3 positions in the file but 4");
  auto other = same;
  other[0].tokens[3] = 11;
  expect_error(other, kVocab, "fingerprint");
}

TEST(TeacherLogits, WriterChecksItsInput) {
  const TempDir dir;
  const auto sequences = small_sequences();
  const std::string path = (dir / "t.topk").string();
  EXPECT_THROW(TeacherLogitsWriter(path, kVocab, 0, kTau, sequences), Error);
  EXPECT_THROW(TeacherLogitsWriter(path, kVocab, kVocab + 1, kTau, sequences), Error);
  EXPECT_THROW(TeacherLogitsWriter(path, kVocab, kK, -1.0, sequences), Error);
  auto bad_mask = sequences;
  bad_mask[0].loss_mask.pop_back();
  EXPECT_THROW(TeacherLogitsWriter(path, kVocab, kK, kTau, bad_mask), Error);
  {
    TeacherLogitsWriter writer(path, kVocab, kK, kTau, sequences);
    std::vector<std::int32_t> ids(kK);
    std::vector<float> top(kK);
    const double lse = teacher_top_k(small_logits(0), kK, kTau, ids, top);
    EXPECT_THROW(writer.write_position(lse, std::span(ids).first(kK - 1), top), Error);
    writer.write_position(lse, ids, top);
    EXPECT_THROW(writer.commit(), Error);  // 1 of 7 positions
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
}

struct CorruptCase {
  const char* name;
  std::function<void(std::string&)> corrupt;
  bool fix_checksum;
  std::vector<std::string> expected;
};

template <class T>
void put(std::string& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}
template <class T>
T get(const std::string& bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

TEST(TeacherLogits, CorruptFilesAreRefusedNamingThePlace) {
  const TempDir dir;
  const std::string good = testing::read_file(write_small_file(dir));
  const std::size_t records = 96;
  const std::size_t record = 8 + 8 * kK;
  const auto ids_at = [&](std::size_t r) { return records + r * record + 8; };
  const auto logits_at = [&](std::size_t r) { return records + r * record + 8 + 4 * kK; };
  const std::vector<CorruptCase> cases = {
      {"empty", [](std::string& b) { b.clear(); }, false, {"too short"}},
      {"one byte short", [](std::string& b) { b.pop_back(); }, false, {"size", "truncated"}},
      {"magic", [](std::string& b) { b[0] = 'X'; }, false, {"magic"}},
      {"version", [](std::string& b) { put<std::uint32_t>(b, 8, 2); }, false, {"version", "2 is not supported"}},
      {"k zero", [](std::string& b) { put<std::uint32_t>(b, 12, 0); }, false, {"k: 0"}},
      {"k above n_vocab", [](std::string& b) { put<std::uint32_t>(b, 12, 41); }, false, {"k: 41"}},
      {"n_vocab zero", [](std::string& b) { put<std::uint64_t>(b, 16, 0); }, false, {"n_vocab"}},
      {"tau zero", [](std::string& b) { put<double>(b, 24, 0.0); }, false, {"tau"}},
      {"tau NaN", [](std::string& b) { put<double>(b, 24, NAN); }, false, {"tau"}},
      {"n_positions", [](std::string& b) { put<std::uint64_t>(b, 40, 8); }, false, {"size", "truncated"}},
      {"n_sequences huge", [](std::string& b) { put<std::uint64_t>(b, 32, ~0ull); }, false, {"size"}},
      {"reserved", [](std::string& b) { put<std::uint64_t>(b, 56, 1); }, false, {"reserved"}},
      {"a record byte flipped", [&](std::string& b) { b[logits_at(3)] ^= 1; }, false, {"checksum"}},
      {"first offset", [](std::string& b) { put<std::uint64_t>(b, 64, 1); }, true, {"offsets[0]"}},
      {"offsets out of order", [](std::string& b) { put<std::uint64_t>(b, 72, 5); }, true, {"offsets[2]", "out of order"}},
      {"last offset", [](std::string& b) { put<std::uint64_t>(b, 88, 6); }, true, {"offsets[3]"}},
      {"id outside the vocabulary", [&](std::string& b) { put<std::int32_t>(b, ids_at(5) + 4, 40); }, true,
       {"record 5 (sequence 2, position 1)", "token id 40 is outside the vocabulary"}},
      {"negative id", [&](std::string& b) { put<std::int32_t>(b, ids_at(0), -1); }, true, {"record 0 (sequence 0, position 0)", "token id -1"}},
      // Next to its twin, so the order check (equal ids are not "descending") lets it through.
      {"id twice", [&](std::string& b) { put<std::int32_t>(b, ids_at(2) + 4 * 5, get<std::int32_t>(b, ids_at(2) + 4 * 4)); }, true,
       {"record 2 (sequence 0, position 2)", "appears twice"}},
      {"logits out of order", [&](std::string& b) { put<float>(b, logits_at(4) + 4, get<float>(b, logits_at(4)) + 1.0f); }, true,
       {"record 4 (sequence 2, position 0)", "descending"}},
      {"NaN logit", [&](std::string& b) { put<float>(b, logits_at(1) + 8, NAN); }, true, {"record 1", "not finite"}},
      {"lse too small", [&](std::string& b) { put<double>(b, records + 6 * record, get<double>(b, records + 6 * record) - 0.5); }, true,
       {"record 6 (sequence 2, position 2)", "lse_tau"}},
      {"lse too large", [&](std::string& b) { put<double>(b, records + 6 * record, get<double>(b, records + 6 * record) + 5.0); }, true,
       {"record 6", "lse_tau"}},
      {"lse infinite", [&](std::string& b) { put<double>(b, records, INFINITY); }, true, {"record 0", "lse_tau"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string bytes = good;
    c.corrupt(bytes);
    if (c.fix_checksum) put<std::uint64_t>(bytes, bytes.size() - 8, fnv(0xcbf29ce484222325ull, bytes.data(), bytes.size() - 8));
    const std::string path = (dir / "bad.topk").string();
    testing::write_file(path, bytes);
    try {
      TeacherLogitsFile file(path);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      for (const auto& part : c.expected) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
}

// compute_teacher_logits against the engine's own logits, sorted and summed here.
TEST(TeacherLogits, ComputedFromStories260KMatchTheEngineByHand) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto data_path = PIQUANT_SHARED_FILE("instruct/wordnet_define_alpaca.json");
  const TempDir dir;
  const auto model = LlamaModel::load(testing::convert_stories260k(dir, checkpoint, tok, "f32").string());
  TrainingData data = load_alpaca(data_path.string(), model->tokenizer(), {.max_seq = 160, .max_records = 3});
  ASSERT_EQ(data.examples.size(), 3u);
  data.examples.push_back(example_of({1}));  // no position at all
  const auto& sequences = data.examples;

  const int k = 16;
  const double tau = 1.7;
  const std::string path = (dir / "teacher.topk").string();
  std::vector<std::pair<std::int64_t, std::int64_t>> calls;
  compute_teacher_logits(*model, sequences, k, tau, 2, path,
                         {.on_sequence = [&](std::int64_t done, std::int64_t total) { calls.emplace_back(done, total); }});
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls.back(), (std::pair<std::int64_t, std::int64_t>{4, 4}));

  const TeacherLogitsFile file(path);
  EXPECT_NO_THROW(file.check_matches(sequences, 512));
  EXPECT_EQ(file.k(), k);
  EXPECT_EQ(file.tau(), tau);
  ContextOptions options;
  options.n_ctx = 256;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  LlamaContext context(*model, options);
  for (std::size_t s = 0; s < 3; ++s) {
    const TrainingExample& ex = sequences[s];
    ASSERT_EQ(file.n_positions(static_cast<std::int64_t>(s)), ex.n_positions());
    context.reset();
    const auto logits = context.eval(ex.inputs(), true);
    for (std::int64_t t = 0; t < ex.n_positions(); ++t) {
      SCOPED_TRACE("sequence " + std::to_string(s) + " position " + std::to_string(t));
      const auto row = logits.subspan(static_cast<std::size_t>(t) * 512, 512);
      const Reference ref = reference_top_k(row, k, tau);
      const auto rec = file.at(static_cast<std::int64_t>(s), t);
      ASSERT_TRUE(std::equal(rec.ids.begin(), rec.ids.end(), ref.ids.begin()));
      ASSERT_TRUE(std::equal(rec.logits.begin(), rec.logits.end(), ref.logits.begin()));
      EXPECT_NEAR(rec.lse_tau, static_cast<double>(ref.lse), 1e-12 * std::max(1.0L, std::fabs(ref.lse)));
      // The tail mass 1 - Σ p_i equals the mass of the tokens not kept, summed here.
      long double kept = 0;
      for (int i = 0; i < k; ++i) kept += std::exp(static_cast<long double>(rec.logits[i]) / tau - rec.lse_tau);
      long double rest = 0;
      for (std::int32_t v = 0; v < 512; ++v) {
        if (std::find(rec.ids.begin(), rec.ids.end(), v) == rec.ids.end()) rest += std::exp(static_cast<long double>(row[v]) / tau - ref.lse);
      }
      EXPECT_NEAR(static_cast<double>(1 - kept), static_cast<double>(rest), 1e-12);
    }
  }

  // k = n_vocab keeps everything: the probabilities sum to 1.
  const std::vector<TrainingExample> one(sequences.begin(), sequences.begin() + 1);
  compute_teacher_logits(*model, one, 512, 1.0, 1, (dir / "all.topk").string());
  const TeacherLogitsFile all((dir / "all.topk").string());
  const auto rec = all.at(0, 3);
  double sum = 0;
  for (const float l : rec.logits) sum += std::exp(static_cast<double>(l) - rec.lse_tau);
  EXPECT_NEAR(sum, 1.0, 1e-12);

  // A token outside the vocabulary fails, and leaves no file behind.
  const std::vector<TrainingExample> bad{example_of({1, 600, 3})};
  EXPECT_THROW(compute_teacher_logits(*model, bad, k, tau, 1, (dir / "bad.topk").string()), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.topk"));
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.topk.partial"));
}

}  // namespace
}  // namespace piquant
