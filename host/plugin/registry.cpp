// SPDX-License-Identifier: Apache-2.0
#include "plugin/registry.hpp"

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "plugin/descriptor.hpp"

namespace mp::host {

namespace {

// Libraries are never unloaded: plugin code may still run on some thread at exit, and a
// descriptor points into the library. Reachable from a global, so not a leak.
std::vector<boost::dll::shared_library>& keepLoaded() {
    static auto* libs = new std::vector<boost::dll::shared_library>();
    return *libs;
}

}  // namespace

std::string defaultPluginDir() {
    std::filesystem::path exe = boost::dll::program_location().string();
    return (exe.parent_path().parent_path() / MP_PLUGIN_SUBDIR).lexically_normal().string();
}

void Registry::loadDirectory(const std::string& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        throw LoadError("plugin directory " + dir + " does not exist or is not a directory");
    }
    // The same directory named twice (config and --plugin-dir) is read once.
    std::string canonical = std::filesystem::canonical(dir, ec).string();
    if (std::find(dirs_.begin(), dirs_.end(), canonical) != dirs_.end()) {
        return;
    }
    dirs_.push_back(canonical);
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.is_regular_file() && entry.path().extension() == ".so") {
            files.push_back(entry.path().string());
        }
    }
    std::sort(files.begin(), files.end());
    // Every file is tried, so one run names every refused plugin (one line each).
    std::string errors;
    for (const auto& f : files) {
        try {
            loadFile(f);
        } catch (const LoadError& e) {
            errors += (errors.empty() ? "" : "\n") + std::string(e.what());
        }
    }
    if (!errors.empty()) {
        throw LoadError(errors);
    }
}

const LoadedPlugin& Registry::loadFile(const std::string& path) {
    auto refuse = [&](const std::string& why) -> LoadError {
        return LoadError("refusing plugin " + path + ": " + why);
    };
    {
        // A clearer word than the loader's for the common mistake of a non-ELF file.
        std::FILE* f = std::fopen(path.c_str(), "rb");
        char magic[4] = {0, 0, 0, 0};
        size_t n = f != nullptr ? std::fread(magic, 1, sizeof magic, f) : 0;
        if (f != nullptr) {
            std::fclose(f);
        }
        if (n != 4 || std::memcmp(magic,
                                  "\x7f"
                                  "ELF",
                                  4) != 0) {
            throw refuse("not a loadable shared library (not an ELF file)");
        }
    }
    boost::dll::shared_library lib;
    try {
        lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
        throw refuse(std::string("not a loadable shared library (") + e.what() + ")");
    }
    if (!lib.has(MP_ENTRY_SYMBOL)) {
        for (int major = 0; major < 10; ++major) {
            std::string other = "mp_plugin_entry_v" + std::to_string(major);
            if (major != MP_ABI_MAJOR && lib.has(other)) {
                throw refuse("built for plugin ABI " + std::to_string(major) +
                             ".x, this host speaks ABI " + std::to_string(MP_ABI_MAJOR) + "." +
                             std::to_string(MP_ABI_MINOR));
            }
        }
        throw refuse("not a mysqlprobe plugin (no exported " MP_ENTRY_SYMBOL
                     " symbol; plugins export it with MP_EXPORT)");
    }
    auto entry = lib.get<const mp_plugin*(const mp_host_api*)>(MP_ENTRY_SYMBOL);
    const mp_plugin* raw = nullptr;
    try {
        raw = entry(api_);
    } catch (const std::exception& e) {
        throw refuse(std::string("the entry function threw: ") + e.what());
    } catch (...) {
        throw refuse("the entry function threw an exception");
    }
    LoadedPlugin lp;
    lp.path = path;
    std::string problem = checkDescriptor(raw, lp.desc);
    if (!problem.empty()) {
        throw refuse(problem);
    }
    if (const LoadedPlugin* other = find(lp.desc.name)) {
        throw refuse("duplicate plugin name '" + std::string(lp.desc.name) +
                     "', already loaded from " + other->path);
    }
    keepLoaded().push_back(std::move(lib));
    plugins_.push_back(lp);
    return plugins_.back();
}

const LoadedPlugin* Registry::find(const std::string& name) const {
    for (const auto& p : plugins_) {
        if (name == p.desc.name) {
            return &p;
        }
    }
    return nullptr;
}

}  // namespace mp::host
