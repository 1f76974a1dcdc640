// SPDX-License-Identifier: Apache-2.0
// Loads plugin libraries with Boost.DLL and keeps them loaded for the life of the process.
#pragma once

#include <mp/abi.h>

#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp::host {

/// A plugin refused; what() is one line naming the file and the reason.
class LoadError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct LoadedPlugin {
    std::string path;
    mp_plugin desc{};  // checked copy
};

class Registry {
  public:
    explicit Registry(const mp_host_api* api) : api_(api) {}

    /// Loads every regular file ending in ".so" in `dir`, in name order. Throws LoadError.
    void loadDirectory(const std::string& dir);
    /// Loads one file. Throws LoadError.
    const LoadedPlugin& loadFile(const std::string& path);

    const LoadedPlugin* find(const std::string& name) const;
    const std::deque<LoadedPlugin>& plugins() const { return plugins_; }

  private:
    const mp_host_api* api_;
    std::deque<LoadedPlugin> plugins_;
    std::vector<std::string> dirs_;  // canonical directories already read
};

/// The directory the built-in plugins live in: <dir of executable>/../<plugin subdir>.
std::string defaultPluginDir();

}  // namespace mp::host
