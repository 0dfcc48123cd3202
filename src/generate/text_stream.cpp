#include "generate/text_stream.h"

#include <algorithm>

#include "tokenizer/unicode_utf8.h"

namespace piquant {

std::size_t utf8_complete_prefix(std::string_view bytes) {
  const std::size_t size = bytes.size();
  // A sequence is at most 4 bytes, so only a lead byte among the last 3 can be unfinished.
  for (std::size_t back = 1; back <= 3 && back <= size; ++back) {
    const auto byte = static_cast<unsigned char>(bytes[size - back]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte: look further back
    std::size_t expected = 0;
    if (byte >= 0xC2 && byte <= 0xDF) expected = 2;
    else if (byte >= 0xE0 && byte <= 0xEF) expected = 3;
    else if (byte >= 0xF0 && byte <= 0xF4) expected = 4;
    return expected > back ? size - back : size;
  }
  return size;
}

TextStream::TextStream(std::vector<std::string> stop_strings, Callback callback) : callback_(std::move(callback)) {
  for (auto& stop : stop_strings) {
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));
  }
}

void TextStream::deliver(std::string_view bytes) {
  if (bytes.empty() || !callback_) return;
  if (is_valid_utf8(bytes)) {
    callback_(bytes);
  } else {
    callback_(replace_invalid_utf8(bytes));
  }
}

std::size_t TextStream::stop_prefix_length() const {
  std::size_t longest = 0;
  for (const std::string& stop : stop_strings_) {
    for (std::size_t k = std::min(stop.size() - 1, pending_.size()); k > longest; --k) {
      if (std::string_view(pending_).substr(pending_.size() - k) == std::string_view(stop).substr(0, k)) {
        longest = k;
        break;
      }
    }
  }
  return longest;
}

bool TextStream::push(std::string_view piece) {
  if (stopped_) return true;
  pending_ += piece;

  std::size_t stop_at = std::string::npos;
  for (const std::string& stop : stop_strings_) stop_at = std::min(stop_at, pending_.find(stop));
  if (stop_at != std::string::npos) {
    deliver(std::string_view(pending_).substr(0, stop_at));
    pending_.clear();
    stopped_ = true;
    return true;
  }

  const std::size_t safe = pending_.size() - stop_prefix_length();
  const std::size_t final_bytes = utf8_complete_prefix(std::string_view(pending_).substr(0, safe));
  deliver(std::string_view(pending_).substr(0, final_bytes));
  pending_.erase(0, final_bytes);
  return false;
}

void TextStream::finish() {
  if (stopped_) return;
  deliver(pending_);
  pending_.clear();
}

}  // namespace piquant
