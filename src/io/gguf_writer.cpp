// GGUF writer: the header is computed from the declared tensors, then the data is streamed
// tensor by tensor into an OutputFile (a fresh temporary beside path), renamed by finish().
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/output_file.hpp>
#include <unordered_set>

#include "io/gguf_internal.hpp"

namespace cdq {

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)) {}

GgufWriter::~GgufWriter() = default;  // an uncommitted OutputFile removes its temporary

void GgufWriter::set(std::string key, GgufValue value) {
  CDQ_CHECK(!header_written_, "GGUF writer: metadata '{}' set after the header was written", key);
  for (const auto& [k, v] : kv_) CDQ_CHECK(k != key, "GGUF writer: duplicate key '{}'", key);
  if (value.is_array())
    CDQ_CHECK(value.elem_type() != GgufType::Array, "GGUF writer: nested arrays in '{}'", key);
  if (key == "general.alignment") {
    CDQ_CHECK(value.type() == GgufType::U32, "general.alignment must be u32");
    const auto a = value.get<uint32_t>();
    CDQ_CHECK(a != 0 && (a & (a - 1)) == 0, "general.alignment {} is not a power of two", a);
    CDQ_CHECK(tensors_.empty(), "set general.alignment before adding tensors");
    alignment_ = a;
  }
  kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type) {
  CDQ_CHECK(!header_written_, "GGUF writer: tensor '{}' added after the header was written", name);
  CDQ_CHECK(!name.empty() && name.size() <= gguf::kMaxNameBytes,
            "GGUF tensor name '{}' must have 1 to {} bytes (llama.cpp's limit)", name,
            gguf::kMaxNameBytes);
  for (const GgufTensorInfo& t : tensors_)
    CDQ_CHECK(t.name != name, "GGUF writer: duplicate tensor name '{}'", name);
  CDQ_CHECK(!dims.empty() && dims.size() <= gguf::kMaxDims,
            "GGUF tensor '{}' needs 1 to {} dimensions, got {}", name, gguf::kMaxDims, dims.size());
  for (uint64_t d : dims) CDQ_CHECK(d > 0, "GGUF tensor '{}' has a zero dimension", name);
  GgufTensorInfo t{std::move(name), std::move(dims), type, data_size_};
  const uint64_t n = t.n_bytes();  // checks the row length against the block size
  data_size_ += gguf::align_up(n, alignment_);
  tensors_.push_back(std::move(t));
}

uint64_t GgufWriter::file_bytes() const {
  uint64_t n = 4 + 4 + 8 + 8;  // magic, version, tensor count, metadata count
  for (const auto& [key, v] : kv_) {
    n += 8 + key.size() + 4 + (v.is_array() ? 4 + 8 : 0);
    for (const std::string& s : v.strings()) n += 8 + s.size();
    n += v.raw().size();
  }
  for (const GgufTensorInfo& t : tensors_) n += 8 + t.name.size() + 4 + 8 * t.dims.size() + 4 + 8;
  return gguf::align_up(n, alignment_) + data_size_;
}

void GgufWriter::write_bytes(const void* p, size_t n) {
  out_->write(p, n);
  written_ += n;
}

void GgufWriter::pad_to_alignment() {
  static const uint8_t zeros[256] = {};
  uint64_t pad = gguf::align_up(written_, alignment_) - written_;
  while (pad > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(pad, sizeof(zeros)));
    write_bytes(zeros, n);
    pad -= n;
  }
}

void GgufWriter::write_header() {
  CDQ_CHECK(!header_written_, "GGUF writer: header written twice");
  out_ = std::make_unique<OutputFile>(path_);
  header_written_ = true;
  auto u32 = [&](uint32_t v) { write_bytes(&v, 4); };
  auto u64 = [&](uint64_t v) { write_bytes(&v, 8); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    write_bytes(s.data(), s.size());
  };
  u32(gguf::kMagic);
  u32(3);
  u64(tensors_.size());
  u64(kv_.size());
  for (const auto& [key, v] : kv_) {
    str(key);
    u32(static_cast<uint32_t>(v.type()));
    if (v.is_array()) {
      u32(static_cast<uint32_t>(v.elem_type()));
      u64(v.size());
    }
    for (const std::string& s : v.strings()) str(s);  // String, or Array of String
    write_bytes(v.raw().data(), v.raw().size());      // fixed-size values
  }
  for (const GgufTensorInfo& t : tensors_) {
    str(t.name);
    u32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) u64(d);
    u32(static_cast<uint32_t>(t.type));
    u64(t.offset);
  }
  pad_to_alignment();
  data_start_ = written_;
}

void GgufWriter::write_tensor(std::string_view name, std::span<const uint8_t> bytes) {
  CDQ_CHECK(header_written_ && !finished_,
            "GGUF writer: tensor '{}' written outside the data phase", name);
  CDQ_CHECK(next_tensor_ < tensors_.size(), "GGUF writer: tensor '{}' was not declared", name);
  const GgufTensorInfo& t = tensors_[next_tensor_];
  CDQ_CHECK(t.name == name, "GGUF writer: tensor '{}' written where '{}' was declared next", name,
            t.name);
  CDQ_CHECK(bytes.size() == t.n_bytes(), "GGUF writer: tensor '{}' has {} bytes, declared {}", name,
            bytes.size(), t.n_bytes());
  CDQ_ASSERT(written_ - data_start_ == t.offset);
  write_bytes(bytes.data(), bytes.size());
  pad_to_alignment();
  ++next_tensor_;
}

void GgufWriter::finish() {
  CDQ_CHECK(header_written_ && !finished_, "GGUF writer: finish() before write_header()");
  CDQ_CHECK(next_tensor_ == tensors_.size(), "GGUF writer: {} of {} tensors written", next_tensor_,
            tensors_.size());
  out_->commit();
  out_.reset();
  finished_ = true;
}

}  // namespace cdq
