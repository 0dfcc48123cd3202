#pragma once
// Finds special-token texts (e.g. "<|eot_id|>") in input so that they become their
// own token instead of being tokenized as text. Priority follows llama.cpp: longer
// texts first, and a text's occurrences left to right, each taken only where no
// earlier-chosen token already covers any of its bytes.
#include <array>
#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

struct TextFragment {
  std::size_t offset = 0;
  std::size_t length = 0;
  std::int32_t token = -1;  // the special token this fragment is, or -1 for plain text
};

class BpeSpecialSplitter {
 public:
  // `always`: matched in every call (user-defined tokens); otherwise only when the caller
  // asks to parse special tokens (control tokens).
  void add(std::string text, std::int32_t id, bool always);
  void finish();  // sorts by priority; call once after the last add()

  // Splits `text` into plain and special fragments covering it in order.
  std::vector<TextFragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string text;
    std::int32_t id;
    bool always;
  };
  std::vector<Entry> entries_;                        // in priority order after finish()
  std::array<std::vector<std::uint32_t>, 256> by_first_byte_;  // entry indices, priority order
  // For each first byte, which second bytes any of its entries have (bit 256: a
  // one-byte entry), so that runs like "<<<<" skip the comparisons.
  std::array<std::bitset<257>, 256> second_bytes_;
};

}  // namespace piquant
