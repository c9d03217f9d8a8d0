// What ranks of a distributed quantize_model send each other, as bytes: a solved linear's
// result (to rank 0, which writes it) and a format's grid constraint (from rank 0, which owns
// the writer, to the rank that solves the linear). Plain native-endian fields: both ends are
// the same program.
#pragma once

#include <cdquant/grid_constraint.hpp>
#include <cdquant/quantize.hpp>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

namespace cdq {

std::vector<std::byte> encode_result(const LinearResult& r);
LinearResult decode_result(std::span<const std::byte> bytes);

std::vector<std::byte> encode_constraint(const std::optional<GridConstraint>& c);
std::optional<GridConstraint> decode_constraint(std::span<const std::byte> bytes);

}  // namespace cdq
