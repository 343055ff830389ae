#pragma once
// The library reports bad input by throwing; it never prints or exits.
// Messages name the thing, the expected value and the actual value.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace gsoft {
namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Formats a shape-like sequence as [a, b, c].
template <typename Seq>
std::string format_shape(const Seq& s) {
  std::ostringstream os;
  os << '[';
  bool first = true;
  for (auto v : s) {
    if (!first) os << ", ";
    os << v;
    first = false;
  }
  os << ']';
  return os.str();
}

}  // namespace gsoft

// Throws std::invalid_argument with the concatenated message when cond is false.
#define GSOFT_CHECK(cond, ...)                                              \
  do {                                                                      \
    if (!(cond)) throw std::invalid_argument(::gsoft::detail::concat(__VA_ARGS__)); \
  } while (0)
