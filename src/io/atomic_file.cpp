#include "gsoft/io/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace gsoft::io {
namespace {

void sync_parent_directory(const std::string& path) {
  // The rename is durable only once the directory entry is on disk; best effort (some file
  // systems refuse fsync on directories).
  const auto parent = std::filesystem::path(path).parent_path();
  const int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp.XXXXXX";
  std::vector<char> buf(tmp_.begin(), tmp_.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0)
    throw std::runtime_error(path_ + ": cannot create a temporary file beside it: " + std::strerror(errno));
  tmp_ = buf.data();
  // mkstemp creates 0600; give the final file the mode a plain create would (0666 & ~umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, 0666 & ~mask);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd_, p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
    }
    p += w;
    size -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) throw std::runtime_error(path_ + ": fsync failed: " + std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw std::runtime_error(path_ + ": close failed: " + std::strerror(errno));
  }
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw std::runtime_error(path_ + ": rename from temporary file failed: " + std::strerror(errno));
  committed_ = true;
  sync_parent_directory(path_);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

void replace_directory(const std::string& dir_in, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(dir_in).lexically_normal();
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);  // left by a run killed while writing it
  try {
    write(tmp.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  if (!fs::exists(dir)) {
    fs::rename(tmp, dir);
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
    // File systems without RENAME_EXCHANGE: two renames, with the old directory kept as .old
    // until the new one is in place.
    if (errno != EINVAL && errno != ENOSYS)
      throw std::runtime_error(dir.string() + ": cannot swap in " + tmp.string() + ": " + std::strerror(errno));
    const fs::path old = dir.string() + ".old";
    fs::remove_all(old);
    fs::rename(dir, old);
    fs::rename(tmp, dir);
    fs::remove_all(old);
  }
  sync_parent_directory(dir.string());
  fs::remove_all(tmp);  // now the old directory
}

}  // namespace gsoft::io
