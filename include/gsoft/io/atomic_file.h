#pragma once
// Write-then-rename: the final path either keeps its old content or gets the complete new one.
#include <cstddef>
#include <functional>
#include <string>

namespace gsoft::io {

class AtomicFile {
 public:
  // Opens a temporary file next to `path`. Throws std::runtime_error naming the directory.
  explicit AtomicFile(std::string path);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  // fsyncs, closes and renames over the final path.
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes a whole string atomically.
void write_file_atomic(const std::string& path, const std::string& content);

// Replaces directory `dir` by one that `write` fills: it writes into "<dir>.tmp", and only then
// swaps it with `dir` in one atomic rename (RENAME_EXCHANGE), so a kill at any point leaves either
// the old directory or the new one at `dir`, never neither or a mix. If `write` throws, `dir` is
// untouched and the temporary directory is removed.
void replace_directory(const std::string& dir, const std::function<void(const std::string&)>& write);

}  // namespace gsoft::io
