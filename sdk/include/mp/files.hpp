// SPDX-License-Identifier: Apache-2.0
// Small POSIX helpers for plugins that keep state on disk or log what peers send. Header-only.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "mp/sdk.hpp"

namespace mp {

/// Replaces `path` with `content`, atomically and durably: a new temporary file in the same
/// folder (mkstemp: a fresh name, O_EXCL, so an existing file or symlink is never opened or
/// followed), written and fsync'ed, renamed over `path` (rename replaces a symlink there, it does
/// not write through it), then the folder fsync'ed. Readers see the old file or the new one,
/// never a part; after a crash, one of the two. Permissions: 0600 (umask aside).
/// Returns "" on success, else one line saying what failed. Concurrent callers on the same path
/// are safe (each has its own temporary; the last rename wins): serialize them if order matters.
inline std::string writeFileAtomic(const std::string& path, std::string_view content) {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    std::string tmpl = path + ".XXXXXX";
    int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0) {
        return "cannot create a temporary file next to " + path + ": " + std::strerror(errno);
    }
    auto fail = [&](const char* what) {
        std::string why = std::string(what) + " " + tmpl + ": " + std::strerror(errno);
        ::close(fd);
        ::unlink(tmpl.c_str());
        return why;
    };
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return fail("cannot write");
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
        return fail("cannot fsync");
    }
    if (::close(fd) != 0) {
        ::unlink(tmpl.c_str());
        return "cannot close " + tmpl + ": " + std::strerror(errno);
    }
    if (::rename(tmpl.c_str(), path.c_str()) != 0) {
        std::string why = "cannot rename " + tmpl + " to " + path + ": " + std::strerror(errno);
        ::unlink(tmpl.c_str());
        return why;
    }
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);  // the rename itself is durable once the folder is
        ::close(dfd);
    }
    return "";
}

/// Text from a peer (a member name, an address, a path) made safe for one log line: well-formed
/// printable UTF-8 is kept, control characters and bytes that are not UTF-8 become \xNN, and the
/// result is cut to `max` bytes with "..." appended when longer.
inline std::string printable(std::string_view s, size_t max = 256) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(std::min(s.size(), max) + 8);
    for (size_t i = 0; i < s.size();) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
            ++i;
            continue;
        }
        size_t n = c >= 0x80 ? utf8SequenceLength(s, i) : 0;
        // C1 controls (U+0080..U+009F) are escaped too: some terminals act on them.
        if (n != 0 && !(n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0)) {
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
        ++i;
    }
    return out;
}

}  // namespace mp
