#include "tokenizer/bpe_pretokenizer.h"

#include <pcre2.h>

#include "core/error.h"

namespace piquant {
namespace {

// Llama 3's and GPT-2's regexes for PCRE2, with two changes that keep the matches those
// of Hugging Face and llama.cpp:
// - the contractions use ASCII case classes instead of (?i:...): PCRE2 folds case by
//   Unicode rules ("'ſ" would match "'s"), the others only fold ASCII letters here;
// - \s and \S are spelled out as Unicode's White_Space set: PCRE2's \s also takes
//   U+180E and leaves out U+0085.
constexpr std::string_view kWhiteSpace =
    R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string llama3_pattern() {
  const std::string ws(kWhiteSpace);
  return R"('(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))"
         R"(|[^\r\n\p{L}\p{N}]?\p{L}+)"
         R"(|\p{N}{1,3})"
         "| ?[^" + ws + R"(\p{L}\p{N}]+[\r\n]*)"
         "|[" + ws + R"(]*[\r\n]+)"
         "|[" + ws + "]+(?![^" + ws + "])"
         "|[" + ws + "]+";
}

std::string gpt2_pattern() {
  const std::string ws(kWhiteSpace);
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+)"
         "| ?[^" + ws + R"(\p{L}\p{N}]+)"
         "|[" + ws + "]+(?![^" + ws + "])"
         "|[" + ws + "]+";
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

bool is_llama3_pre(std::string_view pre) { return pre == kPreLlama3 || pre == "llama3" || pre == "llama-v3"; }

struct BpePreTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() { pcre2_code_free(code); }
};

BpePreTokenizer::BpePreTokenizer(const std::string& pre) : regex_(std::make_unique<Regex>()) {
  std::string pattern;
  if (is_llama3_pre(pre)) {
    pattern = llama3_pattern();
  } else if (pre == kPreGpt2) {
    pattern = gpt2_pattern();
  } else {
    throw Error("byte-level BPE pre-tokenizer '" + pre + "' is not supported (supported: llama-bpe, gpt-2)");
  }
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                               &error, &error_offset, nullptr);
  if (regex_->code == nullptr) {
    throw Error("pre-tokenizer regex for '" + pre + "' does not compile at offset " + std::to_string(error_offset) +
                ": " + pcre2_message(error));
  }
  // JIT is an optimisation only: without it pcre2_match gives the same answers.
  regex_->jit = pcre2_jit_compile(regex_->code, PCRE2_JIT_COMPLETE) == 0;
}

BpePreTokenizer::~BpePreTokenizer() = default;

void BpePreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(regex_->code, nullptr), &pcre2_match_data_free);
  if (!match) throw Error("pre-tokenizer: out of memory for PCRE2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t pos = 0;
  while (pos < text.size()) {
    int rc = PCRE2_ERROR_JIT_STACKLIMIT;
    if (regex_->jit) rc = pcre2_jit_match(regex_->code, subject, text.size(), pos, 0, match.get(), nullptr);
    // The interpreter keeps its backtracking on the heap, so it copes where JIT's stack does not.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(regex_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error("pre-tokenizer: regex match failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const std::size_t start = ovector[0];
    std::size_t end = ovector[1];
    if (start > pos) pieces.push_back(text.substr(pos, start - pos));
    if (end == start) {
      // An empty match cannot happen with these patterns; step one character to be safe.
      end = start + 1;
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    }
    pieces.push_back(text.substr(start, end - start));
    pos = end;
  }
  if (pos < text.size()) pieces.push_back(text.substr(pos));
}

}  // namespace piquant
