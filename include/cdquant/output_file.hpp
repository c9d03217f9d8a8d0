// One output discipline for every file and folder cdquant writes (src/io/output_file.cpp).
//
// An output is built under a fresh, unpredictable name in its destination's directory (created
// with O_EXCL | O_NOFOLLOW, so a file or symbolic link planted at any name is never written
// through), flushed to disk, and renamed onto the destination only when complete: readers see
// the old output or the whole new one, never a partial file. A folder is built as a temporary
// folder beside the destination and renamed into place at the end; a previous output folder
// there is swapped out and removed (symbolic links are never followed). Outputs that are not
// committed are removed by their destructors, and, once install_output_signal_handlers() ran,
// by SIGINT / SIGTERM / SIGHUP too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

// A file output. The final file gets the usual permissions (0666 less the umask).
class OutputFile {
 public:
  // Creates the temporary beside `path`. Throws Error when `path` exists and is not a regular
  // file (a device, a FIFO, a folder) or its directory cannot hold a new file.
  explicit OutputFile(std::string path);
  ~OutputFile();  // uncommitted: the temporary is removed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n);  // buffered; throws Error naming path() on failure
  void write(std::string_view text) { write(text.data(), text.size()); }
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs and closes the temporary (and frees the buffer); no more writes.
  void close();
  // close() unless done, then renames onto path() and fsyncs the directory.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  void flush();

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  int slot_ = -1;  // in the registry of live temporaries
  std::vector<char> buf_;
  size_t used_ = 0;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// A folder output: files are written into build_path() (with OutputFile or any writer), and
// commit() renames that folder to path().
class OutputDir {
 public:
  // Creates the temporary folder beside `path`. Throws Error when the folder that is to hold
  // `path` does not exist, or `path` exists and is a symbolic link, not a folder, or a folder
  // that is not a model folder (empty, or config.json and no subfolders).
  explicit OutputDir(std::string path);
  ~OutputDir();  // uncommitted: the temporary folder and everything in it are removed
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::string& path() const { return path_; }
  const std::string& build_path() const { return tmp_; }
  // Fsyncs the folder, then puts it in place: an existing output folder is atomically swapped
  // with it (renameat2 RENAME_EXCHANGE, or two renames where that is unsupported) and removed.
  void commit();

 private:
  std::string path_;
  std::string tmp_;
  int slot_ = -1;
  bool committed_ = false;
};

// Copies the regular file `src` to the output file `dst` (as OutputFile: atomic, never through
// a link at dst).
void copy_to_output(const std::string& src, const std::string& dst);

enum class OutputKind { File, Folder };

// A path the run reads: what it is (for messages: "--model", "--calib", "tokenizer") and where.
struct RunInput {
  std::string what;
  std::string path;
};

// Throws Error, naming both paths, when `out` is one of the inputs (same device and inode,
// however it is spelled: links, "..", hard links), lies inside an input folder, or (a folder)
// contains an input; or when it exists and is not what the output replaces: a regular file
// for File outputs, a model folder (empty, or with config.json and no subfolders) for Folder
// outputs, never a symbolic link to a folder. Also when the folder that is to hold `out` does
// not exist. Inputs that do not exist are skipped (their own errors come when they are read).
// `flag` names the option in messages.
void check_output_path(const std::string& out, OutputKind kind, const std::vector<RunInput>& inputs,
                       std::string_view flag = "--out");

// Creates and removes a temporary file in the folder that is to hold `out`: an unwritable
// location is reported before any long work rather than after it. Throws Error naming it.
void check_output_writable(const std::string& out);

// SIGINT, SIGTERM and SIGHUP handlers (where the signal is not ignored) that remove every live
// temporary output (unlink / rmdir only: async-signal-safe), then end the process by the same
// signal with its default action. Idempotent.
void install_output_signal_handlers();

}  // namespace cdq
