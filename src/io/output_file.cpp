// The output discipline (cdquant/output_file.hpp): temporaries with unpredictable names, atomic
// renames, a registry of live temporaries for the signal handlers, and the checks that keep an
// output from replacing an input or a non-output.
#include <cdquant/error.hpp>
#include <cdquant/output_file.hpp>

// clang-format off
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
// clang-format on

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <utility>

namespace cdq {

namespace fs = std::filesystem;

// ---- the registry of live temporaries -----------------------------------------------------------
//
// Fixed storage, so that the signal handler reads it without allocating or locking: a slot is
// claimed under a mutex (outside any handler), its path copied, then published by storing its
// kind; the handler only reads published slots. Beyond kSlots live temporaries (or for paths
// longer than PATH_MAX) the temporaries are still removed on errors, only not on signals.

namespace {

enum SlotKind : int { kFree = 0, kClaimed = 1, kFileSlot = 2, kDirSlot = 3 };
constexpr int kSlots = 256;

struct Slot {
  std::atomic<int> kind{kFree};
  char path[PATH_MAX];
};

Slot g_slots[kSlots];
std::mutex g_claim_mutex;

int register_temp(const std::string& path, SlotKind kind) {
  if (path.size() >= PATH_MAX) return -1;
  const std::lock_guard<std::mutex> lock(g_claim_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].kind.load(std::memory_order_acquire) != kFree) continue;
    g_slots[i].kind.store(kClaimed, std::memory_order_relaxed);
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].kind.store(kind, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_temp(int& slot) {
  if (slot >= 0) g_slots[slot].kind.store(kFree, std::memory_order_release);
  slot = -1;
}

// Unlinks every entry of a (flat) folder with raw system calls only: opendir/readdir allocate,
// getdents64 does not. Entries are listed again until a pass removes none.
void empty_dir_signal_safe(const char* path) {
#ifdef SYS_getdents64
  const int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  alignas(8) char buf[4096];
  for (int pass = 0; pass < 16; ++pass) {
    bool removed = false;
    ::lseek(fd, 0, SEEK_SET);
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[].
        uint16_t reclen = 0;
        std::memcpy(&reclen, buf + off + 16, sizeof reclen);
        const char* name = buf + off + 19;
        const bool dot = name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0));
        if (!dot && ::unlinkat(fd, name, 0) == 0) removed = true;
        off += reclen;
      }
    }
    if (!removed) break;
  }
  ::close(fd);
#else
  (void)path;
#endif
}

extern "C" void remove_temps_on_signal(int sig) {
  for (Slot& s : g_slots)
    if (s.kind.load(std::memory_order_acquire) == kFileSlot) ::unlink(s.path);
  for (int i = kSlots - 1; i >= 0; --i)
    if (g_slots[i].kind.load(std::memory_order_acquire) == kDirSlot) {
      empty_dir_signal_safe(g_slots[i].path);
      ::rmdir(g_slots[i].path);
    }
  // SA_RESETHAND restored the default action; the signal is blocked until the handler returns,
  // then ends the process as if no handler had been installed.
  ::raise(sig);
}

// ---- names and system calls -------------------------------------------------------------------

std::string random_suffix() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[12];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    std::random_device rd;
    for (unsigned char& b : bytes) b = static_cast<unsigned char>(rd());
  }
  std::string s;
  for (unsigned char b : bytes) s += kAlphabet[b % 36];
  return s;
}

// The folder holding `path` ("." for a bare name) and the last component.
std::pair<std::string, std::string> split(const std::string& path) {
  fs::path p(path);
  while (p.has_relative_path() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  const std::string name = p.filename().string();
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  return {dir, name};
}

// ".NAME.RANDOM.tmp" beside the destination, the name cut so the whole stays within NAME_MAX.
std::string temp_name_for(const std::string& dir, const std::string& name) {
  const std::string stem = name.substr(0, std::min<size_t>(name.size(), NAME_MAX - 24));
  return (fs::path(dir) / ("." + stem + "." + random_suffix() + ".tmp")).string();
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some file systems refuse fsync on folders
  ::close(fd);
}

const char* type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  return "of an unknown type";
}

void check_holding_dir(const std::string& dir, const std::string& out) {
  struct stat st {};
  CDQ_CHECK(::stat(dir.c_str(), &st) == 0,
            "{}: cannot be written: the folder {} does not exist (create it first)", out, dir);
  CDQ_CHECK(S_ISDIR(st.st_mode), "{}: cannot be written: {} is {}, not a folder", out, dir,
            type_name(st.st_mode));
}

// Why the existing folder `path` may not be replaced by an output folder, or "".
std::string folder_replace_refusal(const std::string& path) {
  std::error_code ec;
  bool any = false, has_config = false;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    any = true;
    if (e.path().filename() == "config.json") has_config = true;
    if (e.is_directory(ec) && !e.is_symlink(ec))
      return fmt::format("it holds the folder {}", e.path().filename().string());
  }
  if (ec) return fmt::format("it cannot be listed: {}", ec.message());
  if (any && !has_config) return "it is not empty and holds no config.json";
  return "";
}

void check_replaceable_folder(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  CDQ_CHECK(!S_ISLNK(st.st_mode),
            "{}: is a symbolic link; give the output folder itself (outputs never follow links)",
            path);
  CDQ_CHECK(S_ISDIR(st.st_mode), "{}: exists and is {}, not a folder; refusing to replace it", path,
            type_name(st.st_mode));
  const std::string why = folder_replace_refusal(path);
  CDQ_CHECK(why.empty(),
            "{}: exists and does not look like a model folder ({}); an output folder replaces "
            "what is there, so give a new or empty folder, or a previous output",
            path, why);
}

void check_replaceable_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;  // nothing there (or a dangling link: replaced)
  CDQ_CHECK(S_ISREG(st.st_mode), "{}: exists and is {}, not a regular file; refusing to replace it",
            path, type_name(st.st_mode));
}

}  // namespace

// ---- OutputFile ---------------------------------------------------------------------------------

OutputFile::OutputFile(std::string path) : path_(std::move(path)) {
  const auto [dir, name] = split(path_);
  CDQ_CHECK(!name.empty() && name != "." && name != "..", "{}: not a file name", path_);
  check_replaceable_file(path_);
  check_holding_dir(dir, path_);
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    tmp_ = temp_name_for(dir, name);
    slot_ = register_temp(tmp_, kFileSlot);  // before it exists: no window for a signal
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    const int err = errno;
    unregister_temp(slot_);
    CDQ_CHECK(err == EEXIST, "{}: cannot create a file in {}: {}", path_, dir, std::strerror(err));
  }
  CDQ_CHECK(fd_ >= 0, "{}: no fresh temporary name in {} after 100 tries", path_, dir);
  buf_.resize(1 << 20);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  unregister_temp(slot_);
}

void OutputFile::flush() {
  size_t done = 0;
  while (done < used_) {
    const ssize_t n = ::write(fd_, buf_.data() + done, used_ - done);
    if (n < 0 && errno == EINTR) continue;
    CDQ_CHECK(n > 0, "{}: write failed: {}", path_, n < 0 ? std::strerror(errno) : "no progress");
    done += static_cast<size_t>(n);
  }
  used_ = 0;
}

void OutputFile::write(const void* data, size_t n) {
  CDQ_CHECK(fd_ >= 0 && !committed_, "{}: written after close", path_);
  const char* p = static_cast<const char*>(data);
  written_ += n;
  while (n > 0) {
    if (used_ == buf_.size()) flush();
    const size_t k = std::min(n, buf_.size() - used_);
    std::memcpy(buf_.data() + used_, p, k);
    used_ += k;
    p += k;
    n -= k;
  }
}

void OutputFile::close() {
  CDQ_CHECK(fd_ >= 0 && !committed_, "{}: closed twice", path_);
  flush();
  CDQ_CHECK(::fsync(fd_) == 0, "{}: write failed (fsync): {}", path_, std::strerror(errno));
  const int rc = ::close(std::exchange(fd_, -1));
  CDQ_CHECK(rc == 0, "{}: write failed (close): {}", path_, std::strerror(errno));
  std::vector<char>().swap(buf_);
}

void OutputFile::commit() {
  CDQ_CHECK(!committed_, "{}: committed twice", path_);
  if (fd_ >= 0) close();
  check_replaceable_file(path_);  // something may have appeared there during the run
  CDQ_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "{}: cannot rename {} to it: {}", path_,
            tmp_, std::strerror(errno));
  committed_ = true;
  unregister_temp(slot_);
  fsync_dir(split(path_).first);
}

// ---- OutputDir ----------------------------------------------------------------------------------

OutputDir::OutputDir(std::string path) : path_(std::move(path)) {
  const auto [dir, name] = split(path_);
  CDQ_CHECK(!name.empty() && name != "." && name != "..", "{}: not a folder name", path_);
  check_holding_dir(dir, path_);
  check_replaceable_folder(path_);
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp_ = temp_name_for(dir, name);
    slot_ = register_temp(tmp_, kDirSlot);
    if (::mkdir(tmp_.c_str(), 0777) == 0) return;
    const int err = errno;
    unregister_temp(slot_);
    CDQ_CHECK(err == EEXIST, "{}: cannot create a folder in {}: {}", path_, dir,
              std::strerror(err));
  }
  tmp_.clear();
  fail("{}: no fresh temporary name in {} after 100 tries", path_, dir);
}

OutputDir::~OutputDir() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);  // remove_all never follows symbolic links
  }
  unregister_temp(slot_);
}

void OutputDir::commit() {
  CDQ_CHECK(!committed_ && !tmp_.empty(), "{}: committed twice", path_);
  fsync_dir(tmp_);
  check_replaceable_folder(path_);
  const std::string parent = split(path_).first;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0) {
    CDQ_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "{}: cannot rename {} to it: {}", path_,
              tmp_, std::strerror(errno));
  } else {
    // Swap the new folder in; the old one then sits at the temporary name and is removed.
    std::string old = tmp_;
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, path_.c_str(), RENAME_EXCHANGE) != 0) {
      CDQ_CHECK(errno == EINVAL || errno == ENOSYS, "{}: cannot swap {} into place: {}", path_,
                tmp_, std::strerror(errno));
      old = temp_name_for(parent, split(path_).second + ".old");
      CDQ_CHECK(::rename(path_.c_str(), old.c_str()) == 0, "{}: cannot move it aside: {}", path_,
                std::strerror(errno));
      CDQ_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0,
                "{}: cannot rename {} to it (the previous output is at {}): {}", path_, tmp_, old,
                std::strerror(errno));
    }
    std::error_code ec;
    fs::remove_all(old, ec);
  }
  committed_ = true;
  unregister_temp(slot_);
  fsync_dir(parent);
}

// ---- helpers ------------------------------------------------------------------------------------

void copy_to_output(const std::string& src, const std::string& dst) {
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  CDQ_CHECK(in >= 0, "{}: cannot open: {}", src, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{in};
  OutputFile out(dst);
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    CDQ_CHECK(n >= 0, "{}: read failed: {}", src, std::strerror(errno));
    if (n == 0) break;
    out.write(buf.data(), static_cast<size_t>(n));
  }
  out.commit();
}

namespace {

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId&) const = default;
};

bool id_of(const std::string& path, FileId& id) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  id = {st.st_dev, st.st_ino};
  return true;
}

// The physical folders that hold `path` (realpath of its folder, then each parent up to /).
std::vector<FileId> ancestors(const std::string& path) {
  std::vector<FileId> out;
  char* real = ::realpath(split(path).first.c_str(), nullptr);
  if (real == nullptr) return out;
  fs::path p(real);
  std::free(real);
  for (;;) {
    FileId id{};
    if (id_of(p.string(), id)) out.push_back(id);
    if (!p.has_relative_path()) break;
    p = p.parent_path();
  }
  return out;
}

bool contains(const std::vector<FileId>& ids, const FileId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

void check_output_path(const std::string& out, OutputKind kind, const std::vector<RunInput>& inputs,
                       std::string_view flag) {
  const auto [dir, name] = split(out);
  CDQ_CHECK(!name.empty() && name != "." && name != "..", "{} {}: not a {} name", flag, out,
            kind == OutputKind::File ? "file" : "folder");
  check_holding_dir(dir, out);
  FileId out_id{};
  const bool out_exists = id_of(out, out_id);
  const std::vector<FileId> out_parents = ancestors(out);
  for (const RunInput& in : inputs) {
    FileId in_id{};
    if (in.path.empty() || !id_of(in.path, in_id)) continue;
    CDQ_CHECK(!(out_exists && out_id == in_id),
              "{} {} is the input {} ({}); refusing to replace it, choose another output path",
              flag, out, in.path, in.what);
    CDQ_CHECK(!contains(out_parents, in_id),
              "{} {} lies inside the input folder {} ({}); choose an output path outside it", flag,
              out, in.path, in.what);
    CDQ_CHECK(!(out_exists && contains(ancestors(in.path), out_id)),
              "{} {} contains the input {} ({}); replacing it would remove the input", flag, out,
              in.path, in.what);
  }
  if (kind == OutputKind::File)
    check_replaceable_file(out);
  else
    check_replaceable_folder(out);
}

void check_output_writable(const std::string& out) {
  const std::string dir = split(out).first;
  try {
    OutputFile probe((fs::path(dir) / "cdquant-probe").string());  // removed uncommitted
  } catch (const Error& e) {
    fail("{}: cannot be written: {}", out, e.what());
  }
}

void install_output_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
      struct sigaction sa {};
      sa.sa_handler = remove_temps_on_signal;
      sigemptyset(&sa.sa_mask);
      for (int other : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sa.sa_mask, other);
      sa.sa_flags = SA_RESETHAND;
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

}  // namespace cdq
