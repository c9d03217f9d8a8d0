// HF safetensors: reader over a memory-mapped file, a streaming writer, and sharded model
// directories (model.safetensors.index.json). File layout: u64 little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to its start. Every offset and size is checked
// against the file before use, so a hostile file gives an Error and never a huge allocation.
#pragma once

#include <cdquant/matrix.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

enum class DType {
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  I64,
  I32,
  I16,
  I8,
  U64,
  U32,
  U16,
  U8,
  Bool
};

DType parse_dtype(std::string_view name);  // "F32", "BF16", "BOOL", ...; throws on unknown
const char* dtype_name(DType d);
size_t dtype_size(DType d);    // bytes per element
bool is_float_dtype(DType d);  // F32, F16, BF16, F64: what read_matrix converts

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offset in the data section
  uint64_t end = 0;    // one past the last byte, relative to the data section

  int64_t numel() const;  // product of shape (1 for a scalar)
  uint64_t nbytes() const { return end - begin; }
};

using Metadata = std::map<std::string, std::string>;

class MappedFile;

// One .safetensors file, mapped read-only and validated at open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws Error naming the file
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;  // throws when absent
  const Metadata& metadata() const { return metadata_; }

  // Raw little-endian bytes of a tensor (any dtype), inside the mapping: valid while this
  // object lives. Not necessarily aligned for the element type: memcpy out of it.
  std::span<const std::byte> bytes(std::string_view name) const;

  // F32/F16/BF16/F64 -> float32. read_matrix wants 2-D ([r, c]) or 1-D (read as [1, n]);
  // read_floats takes any rank and flattens it row-major.
  Matrix read_matrix(std::string_view name) const;
  std::vector<float> read_floats(std::string_view name) const;
  // Integer tensors of exactly this dtype (I32 / I64), flattened.
  std::vector<int32_t> read_i32(std::string_view name) const;
  std::vector<int64_t> read_i64(std::string_view name) const;

 private:
  std::unique_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  Metadata metadata_;
};

// A model stored as safetensors: a directory with model.safetensors.index.json (shards opened
// lazily on first use), a directory with one model.safetensors, or a single .safetensors file.
class SafetensorsDir {
 public:
  explicit SafetensorsDir(const std::string& path);
  ~SafetensorsDir();

  const std::string& path() const { return path_; }
  bool is_sharded() const { return sharded_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  // Index "metadata" (non-string values such as total_size as JSON text), or the single file's
  // __metadata__.
  const Metadata& metadata() const { return metadata_; }
  std::string shard_of(std::string_view name) const;  // file name holding the tensor

  // The file holding a tensor, opened on first use (thread-safe).
  const SafetensorsFile& file_for(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const { return file_for(name).info(name); }
  std::span<const std::byte> bytes(std::string_view name) const {
    return file_for(name).bytes(name);
  }
  Matrix read_matrix(std::string_view name) const { return file_for(name).read_matrix(name); }
  std::vector<float> read_floats(std::string_view name) const {
    return file_for(name).read_floats(name);
  }

 private:
  std::string path_;  // the directory (or the single file)
  std::string dir_;   // where shard files live
  bool sharded_ = false;
  std::map<std::string, std::string, std::less<>> weight_map_;  // tensor -> shard file name
  Metadata metadata_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;  // by shard name
};

// Receives a tensor's bytes while the writer streams them to disk.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t n) = 0;
  // Converts float32 values to dtype (F32, F16, BF16 or F64) and writes them.
  void write_floats(std::span<const float> values, DType dtype);
};

// Writes the tensor's bytes into the sink, exactly the declared numel * dtype size of them.
using TensorProducer = std::function<void(ByteSink&)>;

// Collects tensors (their data or producers that make it at write time), then writes a file
// or a sharded directory. The header is computed from the declared sizes, so tensors are
// produced one at a time in name order and never held all at once. Names are sorted; the
// header is padded with spaces to a multiple of 8 as HF does.
class SafetensorsWriter {
 public:
  // The general form: the producer runs during write(), once per write.
  void add(std::string name, DType dtype, std::vector<int64_t> shape, TensorProducer producer);
  // Owned raw bytes (any dtype), little-endian; size must match the shape.
  void add_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                 std::vector<std::byte> data);
  // Owned float32 values stored as `store` (F32, F16, BF16 or F64).
  void add_floats(std::string name, std::vector<int64_t> shape, std::vector<float> values,
                  DType store = DType::F32);
  void add_matrix(std::string name, Matrix m, DType store = DType::F32);  // shape [rows, cols]
  // Float values made lazily at write time (freed right after they are written).
  void add_float_producer(std::string name, std::vector<int64_t> shape,
                          std::function<std::vector<float>()> make, DType store = DType::F32);
  template <typename T>
  void add_ints(std::string name, DType dtype, std::vector<int64_t> shape,
                const std::vector<T>& values) {
    CDQ_CHECK(sizeof(T) == dtype_size(dtype), "tensor '{}': {}-byte values for dtype {}", name,
              sizeof(T), dtype_name(dtype));
    std::vector<std::byte> b(values.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), values.data(), b.size());
    add_bytes(std::move(name), dtype, std::move(shape), std::move(b));
  }

  void set_metadata(std::string key, std::string value);
  size_t size() const { return entries_.size(); }
  uint64_t total_bytes() const;  // sum of tensor data sizes

  // One file, as an OutputFile (cdquant/output_file.hpp): a failure leaves no partial file.
  void write(const std::string& path) const;
  // HF sharding: tensors in name order filled into shards of at most max_shard_bytes of data
  // (a larger tensor gets a shard of its own) named prefix-0000i-of-0000n.safetensors, plus
  // prefix.safetensors.index.json with metadata.total_size and weight_map. One shard: a
  // plain prefix.safetensors and no index, as HF. Returns the shard file names.
  std::vector<std::string> write_sharded(const std::string& dir, uint64_t max_shard_bytes,
                                         const std::string& prefix = "model") const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    TensorProducer producer;
  };
  void write_file(const std::string& path, const std::vector<std::string>& names) const;

  std::map<std::string, Entry> entries_;  // sorted by name
  Metadata metadata_;
};

// Streaming output whose tensors become ready one after another in a known order (a model
// written block by block as the quantizer finishes them). Every tensor is declared up front,
// so the headers and the shard plan are fixed before any data exists; data regions are laid
// out in declaration order (safetensors readers only need non-overlapping regions, not regions
// in name order) while the JSON keys stay sorted. Tensors must then be written in exactly the
// declaration order. Files are OutputFiles renamed by finish(); an unfinished writer
// removes its temporaries. Sharding as SafetensorsWriter::write_sharded.
class SafetensorsStreamWriter {
 public:
  struct Decl {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
  };
  SafetensorsStreamWriter(std::string dir, std::vector<Decl> tensors, uint64_t max_shard_bytes,
                          std::string prefix = "model", Metadata metadata = {});
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  // Name of the tensor expected next ("" when all are written).
  std::string next() const;
  // Writes the next tensor, which must be `name`: the producer writes exactly its bytes.
  void write(std::string_view name, const TensorProducer& producer);
  void write_bytes(std::string_view name, std::span<const std::byte> bytes);
  // Float values converted to the declared (float) dtype.
  void write_floats(std::string_view name, std::span<const float> values);
  // After every tensor: closes and renames the shards, writes the index when sharded. Returns
  // the shard file names.
  std::vector<std::string> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cdq
