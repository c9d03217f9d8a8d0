// SafetensorsWriter: header from the declared sizes, then each tensor streamed in name order.
#include <algorithm>
#include <cdquant/half.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/safetensors.hpp>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace cdq {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// An OutputFile that counts what one tensor writes and refuses more than was declared.
class FileSink : public ByteSink {
 public:
  explicit FileSink(OutputFile& f) : f_(f) {}

  void begin_tensor(const std::string& name, uint64_t declared) {
    name_ = name;
    declared_ = declared;
    written_ = 0;
  }
  void end_tensor() const {
    CDQ_CHECK(written_ == declared_, "{}: tensor '{}': the producer wrote {} bytes, expected {}",
              f_.path(), name_, written_, declared_);
  }
  void write(const void* data, size_t n) override {
    CDQ_CHECK(n <= declared_ - written_,
              "{}: tensor '{}': the producer wrote more than the declared {} bytes", f_.path(),
              name_, declared_);
    raw(data, n);
    written_ += n;
  }
  void raw(const void* data, size_t n) { f_.write(data, n); }

 private:
  OutputFile& f_;
  std::string name_;
  uint64_t declared_ = 0;
  uint64_t written_ = 0;
};

uint64_t checked_nbytes(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    CDQ_CHECK(d >= 0, "tensor '{}': negative dimension {}", name, d);
    CDQ_CHECK(!__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n) &&
                  n <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "tensor '{}': shape overflows", name);
  }
  return n;
}

void check_float_store(const std::string& name, DType store) {
  CDQ_CHECK(is_float_dtype(store), "tensor '{}': float data cannot be stored as {}", name,
            dtype_name(store));
}

std::string shard_name(const std::string& prefix, size_t i, size_t n) {
  return fmt::format("{}-{:05d}-of-{:05d}.safetensors", prefix, i + 1, n);
}

// Writes text to path as an OutputFile.
void write_text(const std::string& path, const std::string& text) {
  OutputFile out(path);
  out.write(text);
  out.commit();
}

void write_len_and_header(FileSink& sink, const std::string& text) {
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));
  sink.raw(len, 8);
  sink.raw(text.data(), text.size());
}

}  // namespace

void ByteSink::write_floats(std::span<const float> values, DType dtype) {
  CDQ_CHECK(is_float_dtype(dtype), "cannot write floats as {}", dtype_name(dtype));
  if (dtype == DType::F32) return write(values.data(), values.size_bytes());
  // Convert in chunks so that a large tensor needs no second full-size buffer.
  constexpr size_t kChunk = 4096;
  std::vector<std::byte> buf(kChunk * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); i += kChunk) {
    const size_t n = std::min(kChunk, values.size() - i);
    for (size_t k = 0; k < n; ++k) {
      const float v = values[i + k];
      if (dtype == DType::F64) {
        const double d = v;
        std::memcpy(buf.data() + 8 * k, &d, 8);
      } else {
        const uint16_t h = dtype == DType::F16 ? float_to_fp16(v) : float_to_bf16(v);
        std::memcpy(buf.data() + 2 * k, &h, 2);
      }
    }
    write(buf.data(), n * dtype_size(dtype));
  }
}

namespace {

// Every file says {"format": "pt"} unless the caller set a format: transformers before 4.48.2
// refuses safetensors files without it, and torch is what HF clients load these with.
Metadata with_format(Metadata m) {
  m.try_emplace("format", "pt");
  return m;
}

}  // namespace

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            TensorProducer producer) {
  CDQ_CHECK(!name.empty(), "tensor names must not be empty");
  CDQ_CHECK(name != "__metadata__", "'__metadata__' is reserved and cannot name a tensor");
  CDQ_CHECK(!entries_.contains(name), "tensor '{}' added twice", name);
  const uint64_t nbytes = checked_nbytes(name, dtype, shape);
  entries_.emplace(std::move(name), Entry{dtype, std::move(shape), nbytes, std::move(producer)});
}

void SafetensorsWriter::add_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                                  std::vector<std::byte> data) {
  const uint64_t nbytes = checked_nbytes(name, dtype, shape);
  CDQ_CHECK(data.size() == nbytes, "tensor '{}': {} bytes given, {} needs {}", name, data.size(),
            dtype_name(dtype), nbytes);
  auto owned = std::make_shared<std::vector<std::byte>>(std::move(data));
  add(std::move(name), dtype, std::move(shape),
      [owned](ByteSink& sink) { sink.write(owned->data(), owned->size()); });
}

void SafetensorsWriter::add_floats(std::string name, std::vector<int64_t> shape,
                                   std::vector<float> values, DType store) {
  check_float_store(name, store);
  const uint64_t numel = checked_nbytes(name, store, shape) / dtype_size(store);
  CDQ_CHECK(values.size() == numel, "tensor '{}': {} values given, the shape needs {}", name,
            values.size(), numel);
  auto owned = std::make_shared<std::vector<float>>(std::move(values));
  add(std::move(name), store, std::move(shape),
      [owned, store](ByteSink& sink) { sink.write_floats(*owned, store); });
}

void SafetensorsWriter::add_matrix(std::string name, Matrix m, DType store) {
  add_floats(std::move(name), {m.rows, m.cols}, std::move(m.data), store);
}

void SafetensorsWriter::add_float_producer(std::string name, std::vector<int64_t> shape,
                                           std::function<std::vector<float>()> make, DType store) {
  check_float_store(name, store);
  const uint64_t numel = checked_nbytes(name, store, shape) / dtype_size(store);
  auto producer = [make = std::move(make), store, numel, name](ByteSink& sink) {
    const std::vector<float> values = make();
    CDQ_CHECK(values.size() == numel,
              "tensor '{}': the producer made {} values, the shape needs {}", name, values.size(),
              numel);
    sink.write_floats(values, store);
  };
  add(std::move(name), store, std::move(shape), std::move(producer));
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

uint64_t SafetensorsWriter::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [_, e] : entries_) total += e.nbytes;
  return total;
}

void SafetensorsWriter::write_file(const std::string& path,
                                   const std::vector<std::string>& names) const {
  // Header: data laid out in the order of `names` (sorted, as the JSON object's keys).
  json header = json::object();
  header["__metadata__"] = with_format(metadata_);
  uint64_t offset = 0;
  for (const auto& name : names) {
    const Entry& e = entries_.at(name);
    header[name] = {{"dtype", dtype_name(e.dtype)},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // HF pads so the data starts 8-aligned

  OutputFile out(path);
  FileSink sink(out);
  write_len_and_header(sink, text);
  for (const auto& name : names) {
    const Entry& e = entries_.at(name);
    sink.begin_tensor(name, e.nbytes);
    e.producer(sink);
    sink.end_tensor();
  }
  out.commit();
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<std::string> names;
  for (const auto& [name, _] : entries_) names.push_back(name);
  write_file(path, names);
}

std::vector<std::string> SafetensorsWriter::write_sharded(const std::string& dir,
                                                          uint64_t max_shard_bytes,
                                                          const std::string& prefix) const {
  CDQ_CHECK(max_shard_bytes > 0, "the maximum shard size must be positive");
  std::vector<std::vector<std::string>> shards;
  uint64_t filled = 0;
  for (const auto& [name, e] : entries_) {
    // Sizes stay below 2^63 (checked_nbytes), so the sum cannot wrap.
    if (shards.empty() || (filled > 0 && filled + e.nbytes > max_shard_bytes)) {
      shards.emplace_back();
      filled = 0;
    }
    shards.back().push_back(name);
    filled += e.nbytes;
  }
  fs::create_directories(dir);
  if (shards.size() <= 1) {
    const std::string file = prefix + ".safetensors";
    write_file((fs::path(dir) / file).string(),
               shards.empty() ? std::vector<std::string>{} : shards[0]);
    return {file};
  }
  std::vector<std::string> files;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    files.push_back(shard_name(prefix, i, shards.size()));
    write_file((fs::path(dir) / files.back()).string(), shards[i]);
    for (const auto& name : shards[i]) weight_map[name] = files.back();
  }
  const json index = {{"metadata", {{"total_size", total_bytes()}}}, {"weight_map", weight_map}};
  write_text((fs::path(dir) / (prefix + ".safetensors.index.json")).string(), index.dump(2) + "\n");
  return files;
}

// ---- SafetensorsStreamWriter ------------------------------------------------------------------

namespace {

// The JSON header of one file whose tensors (indices into decls) are laid out in that order.
std::string stream_header(const std::vector<SafetensorsStreamWriter::Decl>& decls,
                          const std::vector<uint64_t>& nbytes, const std::vector<size_t>& members,
                          const Metadata& metadata) {
  json header = json::object();
  header["__metadata__"] = with_format(metadata);
  uint64_t offset = 0;
  for (size_t i : members) {
    header[decls[i].name] = {{"dtype", dtype_name(decls[i].dtype)},
                             {"shape", decls[i].shape},
                             {"data_offsets", {offset, offset + nbytes[i]}}};
    offset += nbytes[i];
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

struct SafetensorsStreamWriter::Impl {
  std::string dir;
  std::string prefix;
  std::vector<Decl> decls;
  std::vector<uint64_t> nbytes;
  std::vector<size_t> shard_of;              // per declaration
  std::vector<std::vector<size_t>> members;  // per shard, in declaration order
  std::vector<std::string> files;            // final shard file names
  Metadata metadata;
  size_t next = 0;
  size_t open_shard = 0;
  // Every shard written so far, complete but uncommitted (renamed only by finish(), so an
  // unfinished writer leaves no shard under its final name); the last one is being written.
  std::vector<std::unique_ptr<OutputFile>> shards;
  std::unique_ptr<FileSink> sink;  // over shards.back()
  bool finished = false;

  std::string final_path(size_t s) const { return (fs::path(dir) / files[s]).string(); }

  void open(size_t s) {
    if (!shards.empty()) shards.back()->close();
    shards.push_back(std::make_unique<OutputFile>(final_path(s)));
    sink = std::make_unique<FileSink>(*shards.back());
    write_len_and_header(*sink, stream_header(decls, nbytes, members[s], metadata));
    open_shard = s;
  }
};

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string dir, std::vector<Decl> tensors,
                                                 uint64_t max_shard_bytes, std::string prefix,
                                                 Metadata metadata)
    : impl_(std::make_unique<Impl>()) {
  CDQ_CHECK(max_shard_bytes > 0, "the maximum shard size must be positive");
  Impl& m = *impl_;
  m.dir = std::move(dir);
  m.prefix = std::move(prefix);
  m.metadata = std::move(metadata);
  m.decls = std::move(tensors);
  std::map<std::string, size_t, std::less<>> seen;
  uint64_t filled = 0;
  for (size_t i = 0; i < m.decls.size(); ++i) {
    const Decl& d = m.decls[i];
    CDQ_CHECK(!d.name.empty() && d.name != "__metadata__", "invalid tensor name '{}'", d.name);
    CDQ_CHECK(seen.emplace(d.name, i).second, "tensor '{}' declared twice", d.name);
    m.nbytes.push_back(checked_nbytes(d.name, d.dtype, d.shape));
    if (m.members.empty() || (filled > 0 && filled + m.nbytes[i] > max_shard_bytes)) {
      m.members.emplace_back();
      filled = 0;
    }
    m.members.back().push_back(i);
    m.shard_of.push_back(m.members.size() - 1);
    filled += m.nbytes[i];
  }
  if (m.members.empty()) m.members.emplace_back();
  if (m.members.size() == 1) {
    m.files = {m.prefix + ".safetensors"};
  } else {
    for (size_t s = 0; s < m.members.size(); ++s)
      m.files.push_back(shard_name(m.prefix, s, m.members.size()));
  }
  fs::create_directories(m.dir);
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() = default;  // uncommitted shards go

std::string SafetensorsStreamWriter::next() const {
  return impl_->next < impl_->decls.size() ? impl_->decls[impl_->next].name : "";
}

void SafetensorsStreamWriter::write(std::string_view name, const TensorProducer& producer) {
  Impl& m = *impl_;
  CDQ_CHECK(!m.finished, "tensor '{}' written after finish()", name);
  CDQ_CHECK(m.next < m.decls.size(), "tensor '{}' was not declared (all {} are written)", name,
            m.decls.size());
  const Decl& d = m.decls[m.next];
  CDQ_CHECK(d.name == name, "tensor '{}' written out of order: '{}' comes next", name, d.name);
  if (m.shards.empty() || m.open_shard != m.shard_of[m.next]) m.open(m.shard_of[m.next]);
  m.sink->begin_tensor(d.name, m.nbytes[m.next]);
  producer(*m.sink);
  m.sink->end_tensor();
  ++m.next;
}

void SafetensorsStreamWriter::write_bytes(std::string_view name, std::span<const std::byte> bytes) {
  write(name, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

void SafetensorsStreamWriter::write_floats(std::string_view name, std::span<const float> values) {
  const size_t i = impl_->next;
  CDQ_CHECK(i < impl_->decls.size() && impl_->decls[i].name == name,
            "tensor '{}' written out of order", name);
  const DType dtype = impl_->decls[i].dtype;
  check_float_store(impl_->decls[i].name, dtype);
  CDQ_CHECK(values.size() * dtype_size(dtype) == impl_->nbytes[i],
            "tensor '{}': {} values given, the shape needs {}", name, values.size(),
            impl_->nbytes[i] / dtype_size(dtype));
  write(name, [&](ByteSink& sink) { sink.write_floats(values, dtype); });
}

std::vector<std::string> SafetensorsStreamWriter::finish() {
  Impl& m = *impl_;
  CDQ_CHECK(!m.finished, "finish() called twice");
  CDQ_CHECK(m.next == m.decls.size(), "{} of {} declared tensors were written (next: '{}')", m.next,
            m.decls.size(), next());
  if (m.decls.empty()) m.open(0);  // an empty model file still gets its header
  m.sink.reset();
  for (auto& shard : m.shards) shard->commit();
  m.finished = true;
  if (m.files.size() > 1) {
    json weight_map = json::object();
    uint64_t total = 0;
    for (size_t i = 0; i < m.decls.size(); ++i) {
      weight_map[m.decls[i].name] = m.files[m.shard_of[i]];
      total += m.nbytes[i];
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text((fs::path(m.dir) / (m.prefix + ".safetensors.index.json")).string(),
               index.dump(2) + "\n");
  }
  return m.files;
}

}  // namespace cdq
