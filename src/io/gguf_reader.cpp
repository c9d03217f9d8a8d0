// GGUF reader: every count, length and offset is checked against the bytes the file really
// has before anything is read or allocated.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "io/gguf_internal.hpp"
#include "io/mapped_file.hpp"

namespace cdq {
namespace {

using gguf::fixed_size;

// Bounds-checked little-endian cursor over the mapped bytes.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}: invalid GGUF file: {} (at byte {})", path_,
         fmt::format(f, std::forward<Args>(args)...), pos_);
  }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining()) bad("{} needs {} bytes but only {} remain", what, n, remaining());
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string string(const char* what) {
    const auto n = read<uint64_t>(what);
    if (n > remaining()) bad("{} claims {} bytes but only {} remain", what, n, remaining());
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  // A count of items each at least min_bytes long must fit in what is left.
  uint64_t count(const char* what, uint64_t min_bytes) {
    const auto n = read<uint64_t>(what);
    if (n > remaining() / min_bytes)
      bad("{} {} is more than the remaining {} bytes could hold", what, n, remaining());
    return n;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

GgufType read_value_type(Cursor& c, const std::string& key) {
  const auto t = c.read<uint32_t>("value type");
  if (!gguf::known_type(t)) c.bad("key '{}' has unknown value type {}", key, t);
  return static_cast<GgufType>(t);
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& key) {
  if (type == GgufType::String) return GgufValue::string(c.string("string value"));
  if (type != GgufType::Array) {
    const uint8_t* p = c.take(fixed_size(type), "value");
    return GgufValue::from_raw(type, GgufType::U8, {p, p + fixed_size(type)}, {});
  }
  const GgufType elem = read_value_type(c, key);
  if (elem == GgufType::Array) c.bad("key '{}' holds nested arrays (not supported)", key);
  if (elem == GgufType::String) {
    const uint64_t n = c.count("string array length", 8);
    std::vector<std::string> strings;
    for (uint64_t i = 0; i < n; ++i) strings.push_back(c.string("string array element"));
    return GgufValue::from_raw(GgufType::Array, elem, {}, std::move(strings));
  }
  const uint64_t n = c.count("array length", fixed_size(elem));
  const uint8_t* p = c.take(n * fixed_size(elem), "array");
  return GgufValue::from_raw(GgufType::Array, elem, {p, p + n * fixed_size(elem)}, {});
}

uint32_t checked_alignment(const GgufValue& v, Cursor& c) {
  if (v.type() != GgufType::U32)
    c.bad("general.alignment is {}, expected u32", gguf_type_name(v.type()));
  const auto a = v.get<uint32_t>();
  if (a == 0 || (a & (a - 1)) != 0) c.bad("general.alignment {} is not a power of two", a);
  return a;
}

GgufTensorInfo read_tensor_info(Cursor& c) {
  GgufTensorInfo t;
  t.name = c.string("tensor name");
  const auto n_dims = c.read<uint32_t>("tensor n_dims");
  if (n_dims == 0 || n_dims > gguf::kMaxDims)
    c.bad("tensor '{}' has {} dimensions (1 to {} supported)", t.name, n_dims, gguf::kMaxDims);
  uint64_t elements = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    const auto d = c.read<uint64_t>("tensor dimension");
    // ggml keeps dimensions and element counts in int64: reject anything past INT64_MAX.
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (d == 0) c.bad("tensor '{}' has a zero dimension", t.name);
    if (d > kMax || elements > kMax / d)
      c.bad("tensor '{}' element count overflows (dimension {} = {})", t.name, i, d);
    elements *= d;
    t.dims.push_back(d);
  }
  const auto type_id = c.read<uint32_t>("tensor type");
  const GgmlTypeTraits* tr = find_ggml_traits(type_id);
  if (tr == nullptr) c.bad("tensor '{}' has unsupported ggml type id {}", t.name, type_id);
  t.type = tr->type;
  if (t.dims[0] % static_cast<uint64_t>(tr->block_size) != 0)
    c.bad("tensor '{}' row length {} is not a multiple of the {} block size {}", t.name, t.dims[0],
          tr->name, tr->block_size);
  // The byte count must not wrap (dims[0] = 2^62 of F32 would be 32 bytes): every later size
  // (the data section check, tensor_bytes, the decoders) relies on it.
  uint64_t row_bytes = 0, bytes = 0;
  if (__builtin_mul_overflow(t.dims[0] / static_cast<uint64_t>(tr->block_size),
                             static_cast<uint64_t>(tr->type_size), &row_bytes) ||
      __builtin_mul_overflow(row_bytes, elements / t.dims[0], &bytes))
    c.bad("tensor '{}' byte count overflows 64 bits ({} elements of {})", t.name, elements,
          tr->name);
  t.offset = c.read<uint64_t>("tensor offset");
  return t;
}

}  // namespace

GgufReader::GgufReader(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const auto* data = reinterpret_cast<const uint8_t*>(file_->data());
  Cursor c(file_->path(), data, file_->size());
  const auto magic = c.read<uint32_t>("magic");
  if (magic != gguf::kMagic) c.bad("bad magic 0x{:08x} (expected \"GGUF\")", magic);
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) c.bad("unsupported version {} (2 and 3 are read)", version_);
  // Smallest tensor info: name length, n_dims, one dimension, type, offset.
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.count("metadata count", 8 + 4 + 1);
  if (n_tensors > c.remaining() / 32)
    c.bad("tensor count {} is more than the remaining {} bytes could hold", n_tensors,
          c.remaining());

  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.string("key");
    if (!keys.insert(key).second) c.bad("duplicate key '{}'", key);
    const GgufType type = read_value_type(c, key);
    GgufValue v = read_value(c, type, key);
    if (key == "general.alignment") alignment_ = checked_alignment(v, c);
    kv_.emplace_back(std::move(key), std::move(v));
  }

  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t = read_tensor_info(c);
    if (!names.insert(t.name).second) c.bad("duplicate tensor name '{}'", t.name);
    tensors_.push_back(std::move(t));
  }

  data_offset_ = gguf::align_up(c.pos(), alignment_);
  const uint64_t size = file_->size();
  if (!tensors_.empty() && data_offset_ > size)
    c.bad("data section at byte {} starts past the end of the file ({} bytes)", data_offset_, size);
  const uint64_t data_size = tensors_.empty() ? 0 : size - data_offset_;
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0)
      c.bad("tensor '{}' offset {} is not a multiple of the alignment {}", t.name, t.offset,
            alignment_);
    const uint64_t rows = static_cast<uint64_t>(t.rows());
    const uint64_t row_bytes = ggml_row_bytes(t.type, t.cols());
    if (row_bytes != 0 && rows > data_size / row_bytes)
      c.bad("tensor '{}' ({} bytes per row, {} rows) does not fit in the {}-byte data section",
            t.name, row_bytes, rows, data_size);
    const uint64_t n = row_bytes * rows;
    if (t.offset > data_size || n > data_size - t.offset)
      c.bad("tensor '{}' [{}, {}) runs past the end of the data section ({} bytes)", t.name,
            t.offset, t.offset + n, data_size);
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = tensors_[order[i - 1]];
    const GgufTensorInfo& cur = tensors_[order[i]];
    if (prev.offset + prev.n_bytes() > cur.offset)
      c.bad("tensors '{}' and '{}' overlap", prev.name, cur.name);
  }
}

GgufReader::~GgufReader() = default;
GgufReader::GgufReader(GgufReader&&) noexcept = default;
GgufReader& GgufReader::operator=(GgufReader&&) noexcept = default;

const std::string& GgufReader::path() const {
  return file_->path();
}

const GgufValue* GgufReader::find(std::string_view key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

const GgufValue& GgufReader::get(std::string_view key) const {
  const GgufValue* v = find(key);
  CDQ_CHECK(v != nullptr, "{}: GGUF key '{}' is missing", path(), key);
  return *v;
}

const GgufTensorInfo* GgufReader::find_tensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufReader::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  CDQ_CHECK(t != nullptr, "{}: GGUF tensor '{}' is missing", path(), name);
  return *t;
}

std::span<const uint8_t> GgufReader::tensor_bytes(const GgufTensorInfo& t) const {
  const auto bytes = file_->range(data_offset_ + t.offset, t.n_bytes());
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

void GgufReader::drop_tensor_pages(const GgufTensorInfo& t) const {
  file_->drop_pages(data_offset_ + t.offset, t.n_bytes());
}

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

GgufSizeInfo gguf_size_info(const std::string& path) {
  const GgufReader r(path);
  GgufSizeInfo s;
  s.file_bytes = std::filesystem::file_size(path);
  uint64_t bytes = 0, linear_bytes = 0;
  for (const GgufTensorInfo& t : r.tensors()) {
    s.weights += t.n_elements();
    bytes += t.n_bytes();
    if (t.name.rfind("blk.", 0) == 0 && t.dims.size() == 2) {
      s.linear_weights += t.n_elements();
      linear_bytes += t.n_bytes();
    }
  }
  if (s.weights) s.bits_per_weight = 8.0 * static_cast<double>(bytes) / s.weights;
  if (s.linear_weights)
    s.linear_bits_per_weight = 8.0 * static_cast<double>(linear_bytes) / s.linear_weights;
  return s;
}

}  // namespace cdq
