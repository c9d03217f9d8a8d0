// UTF-8 and piece helpers shared by the tokenizers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cdq::tok {

inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";   // "▁" (U+2581)
inline constexpr std::string_view kUnkSurface = " \xE2\x81\x87 ";  // " ⁇ " as SentencePiece

// Length of the UTF-8 sequence starting at s[i]: 1 to 4, or 1 for an invalid or truncated
// sequence (which then stands for itself as a single byte).
int utf8_len(std::string_view s, size_t i);
// Code point of the sequence at s[i] of length utf8_len(s, i) (the byte itself if invalid).
uint32_t utf8_decode(std::string_view s, size_t i, int len);
void utf8_append(std::string& out, uint32_t cp);

std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

// "<0xAB>" -> 0xAB; -1 when `piece` is not a byte piece (two upper-case hex digits).
int parse_byte_piece(std::string_view piece);
std::string byte_piece(uint8_t b);  // 0xAB -> "<0xAB>"

}  // namespace cdq::tok
