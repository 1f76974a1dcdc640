// SPDX-License-Identifier: Apache-2.0
// Test support: run a real process, capture its output, wait with a deadline, send signals.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mptest {

/// Paths baked in by CMake.
inline std::string binary() { return MP_TEST_BINARY; }
inline std::string sourceDir() { return MP_TEST_SOURCE_DIR; }
inline std::string buildDir() { return MP_TEST_BUILD_DIR; }

inline std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

/// A fresh directory under the build tree, removed by nobody (ctest runs are throwaway).
inline std::string tempDir(const std::string& name) {
    std::string base = buildDir() + "/test-tmp";
    ::mkdir(base.c_str(), 0755);
    std::string tmpl = base + "/" + name + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* dir = ::mkdtemp(buf.data());
    return dir != nullptr ? std::string(dir) : base;
}

/// A child process whose stdout and stderr go to files.
class Process {
  public:
    explicit Process(std::vector<std::string> args, const std::string& outDir = "") {
        std::string dir = outDir.empty() ? tempDir("proc") : outDir;
        outPath_ = dir + "/stdout";
        errPath_ = dir + "/stderr";
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, outPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_addopen(&fa, 2, errPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        // Children start with no blocked signals, whatever the test runner blocked.
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, argv[0], &fa, &attr, argv.data(), environ) != 0) {
            pid_ = -1;
        }
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() {
        if (pid_ > 0 && !exited_) {
            ::kill(pid_, SIGKILL);
            wait(std::chrono::seconds(5));
        }
    }

    bool started() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }
    void signal(int sig) const { ::kill(pid_, sig); }

    /// Waits up to `timeout`; returns true when the process has exited.
    bool wait(std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!exited_) {
            int status = 0;
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                exited_ = true;
                code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return true;
    }
    int exitCode() const { return code_; }
    std::string out() const { return readFile(outPath_); }
    std::string err() const { return readFile(errPath_); }

  private:
    pid_t pid_ = -1;
    bool exited_ = false;
    int code_ = -1;
    std::string outPath_;
    std::string errPath_;
};

/// Runs to completion (deadline 60 s) and returns the exit code; output via the Process.
inline int run(Process& p, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (!p.started() || !p.wait(timeout)) {
        return -1;
    }
    return p.exitCode();
}

/// Polls `cond` until true or the deadline passes.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return cond();
}

}  // namespace mptest
