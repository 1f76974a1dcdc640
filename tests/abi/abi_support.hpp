// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the ABI tests: where the fixtures are, and running the real host on them.
#pragma once

#include <mp/abi.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace abitest {

/// Directory holding exactly one fixture library (and nothing else).
inline std::string fixtureDir(const std::string& fixture) {
    return std::string(MP_TEST_FIXTURE_DIR) + "/" + fixture;
}

/// The fixture's library file, as the host names it when it walks the directory.
inline std::string fixtureLib(const std::string& fixture) {
    if (fixture == "garbage_file") {
        return fixtureDir(fixture) + "/libmp-garbage.so";
    }
    return fixtureDir(fixture) + "/libmp-" + fixture + ".so";
}

/// The built-in plugins' directory (loaded by the host before any --plugin-dir).
inline std::string builtinDir() { return MP_TEST_PLUGIN_DIR; }

struct Result {
    int code = -1;  // -1: did not finish in time (then killed)
    std::string out;
    std::string err;
};

/// Runs the host to completion with a deadline.
inline Result runHost(std::vector<std::string> args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    args.insert(args.begin(), mptest::binary());
    mptest::Process p(args);
    Result r;
    r.code = mptest::run(p, timeout);
    r.out = p.out();
    r.err = p.err();
    return r;
}

/// `mysqlprobe --list-plugins --plugin-dir <fixture dir>`.
inline Result listFixture(const std::string& fixture) {
    return runHost({"--list-plugins", "--plugin-dir", fixtureDir(fixture)});
}

/// The lines of a text, without their newlines.
inline std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) {
            nl = text.size();
        }
        out.push_back(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return out;
}

inline std::string lastLine(const std::string& text) {
    auto all = lines(text);
    return all.empty() ? std::string() : all.back();
}

inline bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

inline bool startsWith(const std::string& s, const std::string& prefix) {
    return s.rfind(prefix, 0) == 0;
}

/// Writes a configuration whose only plugin directory is the fixture's and whose only plugin
/// is one sink; returns its path. `sink` is a YAML flow value: a name or {plugin: .., config: ..}.
inline std::string sinkConfig(const std::string& fixture, const std::string& sink) {
    std::string dir = mptest::tempDir("abi-" + fixture);
    std::string path = dir + "/mysqlprobe.yaml";
    std::string text =
        "serverport: 0\n"
        "serveraddress: 127.0.0.1\n"
        "plugins:\n";
    text += "  directories: ['" + fixtureDir(fixture) + "']\n";
    text += "  cluster: none\n";
    text += "  sinks: [" + sink + "]\n";
    mptest::writeFile(path, text);
    return path;
}

/// Writes `text` as a configuration file in a fresh directory; returns its path.
inline std::string writeConfig(const std::string& name, const std::string& text) {
    std::string path = mptest::tempDir("abi-" + name) + "/mysqlprobe.yaml";
    mptest::writeFile(path, text);
    return path;
}

}  // namespace abitest
