// Read-only memory-mapped file. The bytes are not validated here: every reader checks its
// own offsets against size() before touching them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace cdq {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const std::byte* data() const { return data_; }  // null for an empty file
  std::span<const std::byte> bytes() const { return {data_, static_cast<size_t>(size_)}; }
  // Bytes [offset, offset + length); throws Error when the range leaves the file.
  std::span<const std::byte> range(uint64_t offset, uint64_t length) const;
  // Tells the kernel the pages wholly inside [offset, offset + length) are not needed any
  // more: they leave this process's resident set and are read again from the file if
  // touched. Streaming readers call it after converting a tensor, so reading a model block
  // by block keeps the resident set at one block, not the whole file.
  void drop_pages(uint64_t offset, uint64_t length) const noexcept;

 private:
  void release() noexcept;

  std::string path_;
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace cdq
