// GGUF files (llama.cpp's model format, version 3; version 2 is read too): metadata key/value
// pairs, tensor infos, and an aligned data section of tensors in ggml block formats.
//
// The reader memory-maps the file and validates every count, length, offset and size against
// the file before use, so a truncated or hostile file is rejected with an Error naming the
// file and the problem (never a crash, never an allocation of a size the file claims but does
// not hold). The writer computes the header from declared tensor sizes and then streams the
// tensor data one tensor at a time, so a model never has to be in memory at once.
#pragma once

#include <cdquant/ggml_type.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace cdq {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

const char* gguf_type_name(GgufType t);

// The GgufType of a C++ scalar type (the fixed-size ones).
template <typename T>
constexpr GgufType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return GgufType::U8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return GgufType::I8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return GgufType::U16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return GgufType::I16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return GgufType::U32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return GgufType::I32;
  else if constexpr (std::is_same_v<T, float>)
    return GgufType::F32;
  else if constexpr (std::is_same_v<T, bool>)
    return GgufType::Bool;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return GgufType::U64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return GgufType::I64;
  else if constexpr (std::is_same_v<T, double>)
    return GgufType::F64;
  else
    static_assert(sizeof(T) == 0, "not a GGUF scalar type");
}

// One metadata value: a scalar, a string, or an array of scalars or of strings. Fixed-size
// values are kept as their little-endian bytes (bools as one byte 0/1).
class GgufValue {
 public:
  GgufValue() = default;

  template <typename T>
  static GgufValue scalar(T v) {
    GgufValue g;
    g.type_ = gguf_type_of<T>();
    g.set_raw(&v, 1);
    return g;
  }
  static GgufValue string(std::string s);
  template <typename T>
  static GgufValue array(const std::vector<T>& v) {
    GgufValue g;
    g.type_ = GgufType::Array;
    g.elem_ = gguf_type_of<T>();
    g.set_raw(v.data(), v.size());
    return g;
  }
  static GgufValue array(const std::vector<bool>& v);
  static GgufValue string_array(std::vector<std::string> v);

  GgufType type() const { return type_; }
  GgufType elem_type() const { return elem_; }  // arrays only
  bool is_array() const { return type_ == GgufType::Array; }
  uint64_t size() const;  // array length (1 for scalars)

  // Typed access; throws Error when the stored type is not exactly T.
  template <typename T>
  T get() const {
    check_type(gguf_type_of<T>(), false);
    return load<T>(0);
  }
  template <typename T>
  std::vector<T> get_array() const {
    check_type(gguf_type_of<T>(), true);
    std::vector<T> out(size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = load<T>(i);
    return out;
  }
  const std::string& str() const;                     // String
  const std::vector<std::string>& str_array() const;  // Array of String
  // Any integer scalar as a 64-bit value; throws when negative or not an integer type.
  uint64_t as_uint() const;
  double as_double() const;  // any numeric scalar

  // Internal (reader/writer): the raw little-endian bytes of fixed-size values.
  const std::vector<uint8_t>& raw() const { return raw_; }
  static GgufValue from_raw(GgufType type, GgufType elem, std::vector<uint8_t> raw,
                            std::vector<std::string> strings);
  const std::vector<std::string>& strings() const { return strings_; }
  bool operator==(const GgufValue& o) const = default;

 private:
  template <typename T>
  void set_raw(const T* p, size_t n) {
    raw_.resize(n * (std::is_same_v<T, bool> ? 1 : sizeof(T)));
    for (size_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, bool>)
        raw_[i] = p[i] ? 1 : 0;
      else
        std::memcpy(raw_.data() + i * sizeof(T), &p[i], sizeof(T));
    }
  }
  template <typename T>
  T load(size_t i) const {
    if constexpr (std::is_same_v<T, bool>) {
      return raw_[i] != 0;
    } else {
      T v;
      std::memcpy(&v, raw_.data() + i * sizeof(T), sizeof(T));
      return v;
    }
  }
  void check_type(GgufType want, bool array) const;

  GgufType type_ = GgufType::U8;
  GgufType elem_ = GgufType::U8;
  std::vector<uint8_t> raw_;
  std::vector<std::string> strings_;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is contiguous ([out, in] -> {in, out})
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // relative to the data section

  uint64_t n_elements() const;
  uint64_t n_bytes() const;
  int64_t cols() const { return static_cast<int64_t>(dims.empty() ? 1 : dims[0]); }
  int64_t rows() const;  // product of dims[1..]
};

constexpr uint32_t kGgufDefaultAlignment = 32;

class MappedFile;
class OutputFile;

class GgufReader {
 public:
  explicit GgufReader(const std::string& path);  // throws Error naming the path
  ~GgufReader();
  GgufReader(GgufReader&&) noexcept;
  GgufReader& operator=(GgufReader&&) noexcept;

  const std::string& path() const;
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  const GgufValue& get(std::string_view key) const;  // throws Error naming the key

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor(std::string_view name) const;  // throws Error naming it
  // The stored bytes of a tensor (a view into the mapped file).
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& t) const;
  // Lets the OS drop the tensor's pages once it has been read (streaming: RSS at one block).
  void drop_tensor_pages(const GgufTensorInfo& t) const;

 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

// Streaming writer. Usage: set() the metadata, add_tensor() every tensor (name, dims, type),
// then write_header(), then write_tensor() each tensor's bytes in the order they were added,
// then finish(). Offsets follow ggml's layout: tensors back to back in order, each padded to
// the alignment (general.alignment if set, else 32).
class GgufWriter {
 public:
  explicit GgufWriter(std::string path);
  ~GgufWriter();  // an unfinished file is removed (it is built as an OutputFile)
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  void set(std::string key, GgufValue value);  // throws on a duplicate key
  void add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type);
  void write_header();
  void write_tensor(std::string_view name, std::span<const uint8_t> bytes);
  void finish();

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // Bytes the file will have with the metadata set and the tensors declared so far (header
  // padded to the alignment, then every tensor padded), before anything is written.
  uint64_t file_bytes() const;

 private:
  void write_bytes(const void* p, size_t n);
  void pad_to_alignment();

  std::string path_;
  std::unique_ptr<OutputFile> out_;  // from write_header() to finish()
  uint64_t written_ = 0;
  uint64_t data_start_ = 0;  // file offset of the data section
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_size_ = 0;  // next tensor offset
  size_t next_tensor_ = 0;
  bool header_written_ = false;
  bool finished_ = false;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

// Whether a file starts with the GGUF magic.
bool is_gguf_file(const std::string& path);

// Bits per weight of a GGUF file's 2-D tensors (stored bits / weights) and of all tensors.
struct GgufSizeInfo {
  uint64_t file_bytes = 0;
  uint64_t weights = 0;         // elements of all tensors
  double bits_per_weight = 0;   // 8 * tensor bytes / elements, all tensors
  uint64_t linear_weights = 0;  // elements of blk.* 2-D tensors
  double linear_bits_per_weight = 0;
};
GgufSizeInfo gguf_size_info(const std::string& path);

}  // namespace cdq
