#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

namespace cdq {

namespace {

// Closes the descriptor on every path out of the constructor.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  CDQ_CHECK(fd.fd >= 0, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  CDQ_CHECK(::fstat(fd.fd, &st) == 0, "{}: cannot stat: {}", path, std::strerror(errno));
  CDQ_CHECK(S_ISREG(st.st_mode), "{}: not a regular file", path);
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) return;  // mmap of length 0 is an error; an empty file maps to nothing
  void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  CDQ_CHECK(p != MAP_FAILED, "{}: cannot map {} bytes: {}", path, size_, std::strerror(errno));
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  release();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::release() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

std::span<const std::byte> MappedFile::range(uint64_t offset, uint64_t length) const {
  // Written so that offset + length cannot overflow.
  CDQ_CHECK(offset <= size_ && length <= size_ - offset,
            "{}: byte range [{}, +{}) lies outside the file ({} bytes)", path_, offset, length,
            size_);
  return {data_ + offset, static_cast<size_t>(length)};
}

void MappedFile::drop_pages(uint64_t offset, uint64_t length) const noexcept {
  if (data_ == nullptr || offset >= size_) return;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t end = std::min(size_, offset + length);
  const uint64_t first = (offset + page - 1) / page * page;  // whole pages only
  const uint64_t last = end / page * page;
  if (last <= first) return;
  madvise(const_cast<std::byte*>(data_) + first, last - first, MADV_DONTNEED);
}

}  // namespace cdq
