// SafetensorsFile: open, validate every header entry against the file, convert on read.
#include <algorithm>
#include <bit>
#include <cdquant/half.hpp>
#include <cdquant/safetensors.hpp>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/json_limits.hpp"
#include "io/mapped_file.hpp"

namespace cdq {

namespace {

using json = nlohmann::json;

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

// HF's own reader refuses headers above 100 MB; a larger one is a damaged or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint64_t>(p[i]);
  return v;
}

// A non-negative JSON integer, or an Error naming what it was for.
uint64_t json_u64(const json& v, const std::string& where, const char* what) {
  CDQ_CHECK(v.is_number_unsigned(), "{}: {} must be a non-negative integer, got {}", where, what,
            v.dump());
  return v.get<uint64_t>();
}

// Header structure: {name: {dtype, shape: [..], data_offsets: [b, e]}, "__metadata__": {k: v}}.
// Three levels; a shape of more than 16 dimensions or a metadata object of more than 65,536
// keys is no real checkpoint, and checking before parsing keeps a hostile header from costing
// gigabytes of parsed JSON (the header may be 100 MB).
const JsonLimits kHeaderLimits{.max_depth = 3, .max_elements = {UINT64_MAX, 1 << 16, 16}};

json parse_header(const std::string& path, std::string_view text) {
  check_json_limits(text, kHeaderLimits, path + ": safetensors header");
  // nlohmann keeps the last of duplicate keys silently; a duplicate tensor name is an error.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      auto key = parsed.get<std::string>();
      if (!seen.insert(key).second) duplicate = std::move(key);
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    fail("{}: the safetensors header is not valid JSON: {}", path, e.what());
  }
  CDQ_CHECK(duplicate.empty(), "{}: duplicate tensor name '{}' in the header", path, duplicate);
  CDQ_CHECK(header.is_object(), "{}: the safetensors header must be a JSON object, got {}", path,
            header.type_name());
  return header;
}

Metadata parse_metadata(const std::string& path, const json& m) {
  CDQ_CHECK(m.is_object(), "{}: __metadata__ must be an object of strings", path);
  Metadata out;
  for (const auto& [k, v] : m.items()) {
    CDQ_CHECK(v.is_string(), "{}: __metadata__ value '{}' must be a string, got {}", path, k,
              v.dump());
    out[k] = v.get<std::string>();
  }
  return out;
}

// One tensor entry, checked against the data section of data_size bytes.
TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e,
                       uint64_t data_size) {
  const std::string where = fmt::format("{}: tensor '{}'", path, name);
  CDQ_CHECK(!name.empty(), "{}: empty tensor name", path);
  CDQ_CHECK(e.is_object(), "{}: entry must be an object, got {}", where, e.dump());
  CDQ_CHECK(e.contains("dtype") && e["dtype"].is_string(), "{}: missing string 'dtype'", where);
  CDQ_CHECK(e.contains("shape") && e["shape"].is_array(), "{}: missing array 'shape'", where);
  CDQ_CHECK(
      e.contains("data_offsets") && e["data_offsets"].is_array() && e["data_offsets"].size() == 2,
      "{}: 'data_offsets' must be [begin, end]", where);
  TensorInfo t;
  t.name = name;
  try {
    t.dtype = parse_dtype(e["dtype"].get<std::string>());
  } catch (const Error& err) {
    fail("{}: {}", where, err.what());
  }
  // numel * element size must fit in 64 bits: an absurd shape must not wrap to a small size.
  uint64_t nbytes = dtype_size(t.dtype);
  for (const auto& d : e["shape"]) {
    const uint64_t dim = json_u64(d, where, "every shape entry");
    CDQ_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "{}: shape entry {} is too large", where, dim);
    t.shape.push_back(static_cast<int64_t>(dim));
    CDQ_CHECK(!__builtin_mul_overflow(nbytes, dim, &nbytes) &&
                  nbytes <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "{}: shape {} overflows the element count", where, e["shape"].dump());
  }
  t.begin = json_u64(e["data_offsets"][0], where, "data_offsets[0]");
  t.end = json_u64(e["data_offsets"][1], where, "data_offsets[1]");
  CDQ_CHECK(t.begin <= t.end, "{}: data_offsets [{}, {}] end before they begin", where, t.begin,
            t.end);
  CDQ_CHECK(t.end <= data_size,
            "{}: data_offsets [{}, {}] run past the data section ({} bytes): file truncated?",
            where, t.begin, t.end, data_size);
  CDQ_CHECK(t.end - t.begin == nbytes, "{}: data_offsets [{}, {}] hold {} bytes but {} {} needs {}",
            where, t.begin, t.end, t.end - t.begin, dtype_name(t.dtype), e["shape"].dump(), nbytes);
  return t;
}

// Tensors may leave gaps but must not share bytes.
void check_no_overlap(const std::string& path,
                      const std::map<std::string, TensorInfo, std::less<>>& ts) {
  std::vector<const TensorInfo*> by_begin;
  for (const auto& [_, t] : ts)
    if (t.nbytes() > 0) by_begin.push_back(&t);
  std::sort(by_begin.begin(), by_begin.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const TensorInfo& a = *by_begin[i - 1];
    const TensorInfo& b = *by_begin[i];
    CDQ_CHECK(b.begin >= a.end, "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path, a.name,
              a.begin, a.end, b.name, b.begin, b.end);
  }
}

std::string some_names(const std::map<std::string, TensorInfo, std::less<>>& ts) {
  std::string out;
  size_t n = 0;
  for (const auto& [name, _] : ts) {
    if (n == 8) return out + ", ...";
    out += (n++ ? ", " : "") + name;
  }
  return n ? out : "no tensors";
}

// Element i of a float tensor's raw bytes as float32.
void convert_floats(DType dtype, const std::byte* src, size_t n, float* dst) {
  if (n == 0) return;  // dst may be null (an empty vector's data()): memcpy(null, ..., 0) is UB
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case DType::F16:
    case DType::BF16: {
      const bool f16 = dtype == DType::F16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16 ? fp16_to_float(h) : bf16_to_float(h);
      }
      return;
    }
    default:
      CDQ_ASSERT(false);
  }
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const uint64_t size = file_->size();
  CDQ_CHECK(size > 0, "{}: file is empty, not a safetensors file", path);
  CDQ_CHECK(size >= 8, "{}: file is {} bytes, too short for the 8-byte safetensors header length",
            path, size);
  const uint64_t n = read_u64_le(file_->data());
  CDQ_CHECK(n <= size - 8,
            "{}: header length {} exceeds the {} bytes after it: truncated or not safetensors",
            path, n, size - 8);
  CDQ_CHECK(n <= kMaxHeaderBytes, "{}: header length {} is above the {}-byte limit", path, n,
            kMaxHeaderBytes);
  data_start_ = 8 + n;
  const auto text = file_->range(8, n);
  const json header = parse_header(path, {reinterpret_cast<const char*>(text.data()), text.size()});
  const uint64_t data_size = size - data_start_;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      metadata_ = parse_metadata(path, value);
      continue;
    }
    tensors_.emplace(key, parse_entry(path, key, value, data_size));
  }
  check_no_overlap(path, tensors_);
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const {
  return file_->path();
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, _] : tensors_) out.push_back(name);
  return out;
}

bool SafetensorsFile::contains(std::string_view name) const {
  return tensors_.contains(name);
}

const TensorInfo& SafetensorsFile::info(std::string_view name) const {
  const auto it = tensors_.find(name);
  CDQ_CHECK(it != tensors_.end(), "{}: tensor '{}' not found (has: {})", path(), name,
            some_names(tensors_));
  return it->second;
}

std::span<const std::byte> SafetensorsFile::bytes(std::string_view name) const {
  const TensorInfo& t = info(name);
  return file_->range(data_start_ + t.begin, t.nbytes());
}

std::vector<float> SafetensorsFile::read_floats(std::string_view name) const {
  const TensorInfo& t = info(name);
  CDQ_CHECK(is_float_dtype(t.dtype), "{}: tensor '{}' has dtype {}, expected F32, F16 or BF16",
            path(), name, dtype_name(t.dtype));
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert_floats(t.dtype, bytes(name).data(), out.size(), out.data());
  file_->drop_pages(data_start_ + t.begin, t.nbytes());  // streaming: keep RSS at one block
  return out;
}

Matrix SafetensorsFile::read_matrix(std::string_view name) const {
  const TensorInfo& t = info(name);
  CDQ_CHECK(t.shape.size() == 1 || t.shape.size() == 2,
            "{}: tensor '{}' has {} dimensions, expected a matrix (2) or a vector (1)", path(),
            name, t.shape.size());
  Matrix m;
  m.rows = t.shape.size() == 2 ? t.shape[0] : 1;
  m.cols = t.shape.back();
  m.data = read_floats(name);
  return m;
}

namespace {

template <typename T>
std::vector<T> read_ints(const SafetensorsFile& f, std::string_view name, DType want) {
  const TensorInfo& t = f.info(name);
  CDQ_CHECK(t.dtype == want, "{}: tensor '{}' has dtype {}, expected {}", f.path(), name,
            dtype_name(t.dtype), dtype_name(want));
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), f.bytes(name).data(), out.size() * sizeof(T));
  return out;
}

}  // namespace

std::vector<int32_t> SafetensorsFile::read_i32(std::string_view name) const {
  return read_ints<int32_t>(*this, name, DType::I32);
}

std::vector<int64_t> SafetensorsFile::read_i64(std::string_view name) const {
  return read_ints<int64_t>(*this, name, DType::I64);
}

}  // namespace cdq
