#pragma once
// Turns the pieces of generated tokens into text that is final: an incomplete UTF-8
// sequence at the end is held back until its last byte arrives, and so is any tail
// that could still grow into a stop string (which may span several tokens).
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

class TextStream {
 public:
  using Callback = std::function<void(std::string_view)>;

  // Empty stop strings are ignored. The callback only ever sees valid UTF-8.
  TextStream(std::vector<std::string> stop_strings, Callback callback);

  // Appends a token's bytes and delivers what became final. Returns true when a stop
  // string is complete: the text before it is delivered, the stop string and anything
  // after it are dropped, and later pushes are ignored.
  bool push(std::string_view piece);

  // Delivers everything still held back (an unfinished UTF-8 sequence as U+FFFD).
  void finish();

  bool stopped() const { return stopped_; }

 private:
  std::size_t stop_prefix_length() const;  // longest tail of pending_ that begins a stop string
  void deliver(std::string_view bytes);

  std::vector<std::string> stop_strings_;
  Callback callback_;
  std::string pending_;
  bool stopped_ = false;
};

// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence
// whose remaining bytes may still come.
std::size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace piquant
