#pragma once
// Unicode for the tokenizers (internal): UTF-8 <-> code points, the character classes that
// Hugging Face's normalizers and pre-tokenizers test, and ICU's normalisation and full case
// mapping. Text is handled as std::u32string so that a "character" is one code point, as in Rust.
#include <string>
#include <string_view>

namespace gsoft::text {

// Invalid UTF-8 becomes U+FFFD (one per bad byte), as Rust's from_utf8_lossy does.
std::u32string utf8_decode(std::string_view bytes);
std::string utf8_encode(std::u32string_view text);
void append_utf8(std::string& out, char32_t c);

bool is_letter(char32_t c);       // \p{L}
bool is_number(char32_t c);       // \p{N}
bool is_whitespace(char32_t c);   // the White_Space property (Rust's char::is_whitespace)
bool is_punctuation(char32_t c);  // \p{P}
bool is_symbol(char32_t c);       // \p{S}
bool is_control(char32_t c);      // Cc, Cf, Co or Cs
bool is_nonspacing_mark(char32_t c);  // Mn
// The CJK Unified Ideograph blocks that BERT surrounds with spaces.
bool is_chinese_char(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::u32string normalize(std::u32string_view text, NormalForm form);
// Full (not per-character) lower-casing: "İ" becomes "i̇", and a final capital sigma becomes "ς".
std::u32string to_lower(std::u32string_view text);

}  // namespace gsoft::text
