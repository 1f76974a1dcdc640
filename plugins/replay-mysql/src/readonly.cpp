// SPDX-License-Identifier: Apache-2.0
#include "readonly.hpp"

#include <cctype>
#include <string>

namespace mp::replay {
namespace {

// Skips whitespace and comments (/* */, -- , #); MariaDB's executable comments /*! */ and /*M! */
// are code: their text is read as the statement's.
size_t skipBlank(std::string_view s, size_t i) {
    while (i < s.size()) {
        const char c = s[i];
        if (std::isspace(static_cast<unsigned char>(c)) != 0) {
            ++i;
        } else if (c == '#' || (c == '-' && s.substr(i, 3) == "-- ")) {
            size_t nl = s.find('\n', i);
            i = nl == std::string_view::npos ? s.size() : nl + 1;
        } else if (s.substr(i, 2) == "/*") {
            if (s.substr(i, 3) == "/*!" || s.substr(i, 4) == "/*M!") {
                i += s[i + 2] == '!' ? 3 : 4;
                while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0) {
                    ++i;  // the version number
                }
            } else {
                size_t end = s.find("*/", i + 2);
                i = end == std::string_view::npos ? s.size() : end + 2;
            }
        } else {
            break;
        }
    }
    return i;
}

std::string word(std::string_view s, size_t& i) {
    i = skipBlank(s, i);
    std::string w;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) != 0 || s[i] == '_')) {
        w += static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
        ++i;
    }
    return w;
}

// The statement's words outside quotes, comments and parentheses' strings; stops at a ';'
// (`more` set when another statement follows it).
void scan(std::string_view s, std::string& upper, bool& more) {
    more = false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '\'' || c == '"' || c == '`') {
            for (++i; i < s.size() && s[i] != c; ++i) {
                if (s[i] == '\\' && c != '`') {
                    ++i;
                }
            }
            upper += ' ';
            continue;
        }
        if (c == ';') {
            more = skipBlank(s, i + 1) < s.size();
            return;
        }
        upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
}

bool hasWord(const std::string& upper, std::string_view w) {
    for (size_t at = upper.find(w); at != std::string::npos; at = upper.find(w, at + 1)) {
        const bool startOk =
            at == 0 || (std::isalnum(static_cast<unsigned char>(upper[at - 1])) == 0 &&
                        upper[at - 1] != '_' && upper[at - 1] != '@');
        const size_t end = at + w.size();
        const bool endOk =
            end == upper.size() ||
            (std::isalnum(static_cast<unsigned char>(upper[end])) == 0 && upper[end] != '_');
        if (startOk && endOk) {
            return true;
        }
    }
    return false;
}

}  // namespace

bool readOnlySql(std::string_view sql) {
    std::string upper;
    bool more = false;
    scan(sql, upper, more);
    if (more) {
        return false;
    }
    size_t i = 0;
    const std::string first = word(sql, i);
    if (first == "SELECT" || first == "WITH" || first == "VALUES" || first == "TABLE") {
        for (size_t at = upper.find("FOR UPDATE"); at != std::string::npos;
             at = upper.find("FOR UPDATE")) {
            upper.replace(at, 10, "   ");  // a lock, not a write
        }
        // SELECT ... INTO OUTFILE/DUMPFILE writes a file; INTO @var sets a variable only, but
        // is rare enough to be skipped too. WITH ... may lead to a write in MySQL 8.
        return !hasWord(upper, "INTO") && !hasWord(upper, "UPDATE") && !hasWord(upper, "DELETE") &&
               !hasWord(upper, "INSERT") && !hasWord(upper, "REPLACE") &&
               !hasWord(upper, "NEXTVAL") && !hasWord(upper, "SETVAL") &&
               !hasWord(upper, "GET_LOCK");
    }
    if (first == "SHOW" || first == "DESCRIBE" || first == "DESC" || first == "HELP" ||
        first == "USE" || first == "BEGIN" || first == "COMMIT" || first == "ROLLBACK") {
        return true;
    }
    if (first == "START") {
        return word(sql, i) == "TRANSACTION";
    }
    if (first == "EXPLAIN") {
        return !hasWord(upper, "ANALYZE") && !hasWord(upper, "INTO");
    }
    if (first == "SET") {
        return !hasWord(upper, "GLOBAL") && !hasWord(upper, "PERSIST") &&
               !hasWord(upper, "PERSIST_ONLY") && upper.find("@@GLOBAL") == std::string::npos &&
               !hasWord(upper, "PASSWORD") && !hasWord(upper, "ROLE") &&
               !hasWord(upper, "NEXTVAL") && !hasWord(upper, "SELECT");
    }
    if (first == "DO") {
        return !hasWord(upper, "GET_LOCK") && !hasWord(upper, "NEXTVAL") &&
               !hasWord(upper, "SELECT");
    }
    return false;
}

}  // namespace mp::replay
