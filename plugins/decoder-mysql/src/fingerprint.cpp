// SPDX-License-Identifier: Apache-2.0
#include "fingerprint.hpp"

#include <vector>

namespace mp::mysql {

uint64_t fnv1a64(std::string_view s) {
    uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : s) {
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

namespace {

bool isWordStart(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80;
}
bool isWord(unsigned char c) { return isWordStart(c) || (c >= '0' && c <= '9'); }
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool isSpace(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Token kinds of the normalised stream.
enum class Kind { Word, Literal, Punct };
struct Token {
    Kind kind;
    std::string text;
};

// Skips a quoted literal starting at i (quote q); returns the index after it.
size_t skipQuoted(std::string_view s, size_t i, char q) {
    ++i;
    while (i < s.size()) {
        if (s[i] == '\\' && q != '`') {
            i += 2;
            continue;
        }
        if (s[i] == q) {
            if (i + 1 < s.size() && s[i + 1] == q) {  // doubled quote
                i += 2;
                continue;
            }
            return i + 1;
        }
        ++i;
    }
    return s.size();
}

bool literalBefore(const std::vector<Token>& t) {
    // A '-' or '+' is a sign (part of the literal) unless it follows an operand.
    if (t.empty()) {
        return true;
    }
    const Token& p = t.back();
    if (p.kind == Kind::Literal) {
        return false;
    }
    if (p.kind == Kind::Punct) {
        return p.text != ")";
    }
    // Words: keywords that take an operand after them.
    static const char* const kOps[] = {"select", "where", "and", "or",    "not",     "in",
                                       "values", "set",   "by",  "limit", "offset",  "when",
                                       "then",   "else",  "is",  "like",  "between", "return",
                                       "having", "on",    "xor", "div",   "mod",     "interval"};
    for (const char* k : kOps) {
        if (p.text == k) {
            return true;
        }
    }
    return false;
}

std::vector<Token> tokenize(std::string_view s, size_t maxTokens) {
    std::vector<Token> t;
    size_t i = 0;
    auto push = [&](Kind k, std::string text) {
        if (t.size() < maxTokens) {
            t.push_back({k, std::move(text)});
        }
    };
    while (i < s.size() && t.size() < maxTokens) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (isSpace(c)) {
            ++i;
            continue;
        }
        // Comments.
        if (c == '#' || (c == '-' && i + 2 < s.size() + 1 && s.substr(i, 2) == "--" &&
                         (i + 2 == s.size() || isSpace(static_cast<unsigned char>(s[i + 2]))))) {
            size_t nl = s.find('\n', i);
            i = nl == std::string_view::npos ? s.size() : nl + 1;
            continue;
        }
        if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
            size_t end = s.find("*/", i + 2);
            i = end == std::string_view::npos ? s.size() : end + 2;
            continue;
        }
        // String literals.
        if (c == '\'' || c == '"') {
            i = skipQuoted(s, i, static_cast<char>(c));
            push(Kind::Literal, "?");
            continue;
        }
        // Quoted identifiers keep their text (lower-cased), without the backticks.
        if (c == '`') {
            size_t end = skipQuoted(s, i, '`');
            std::string id;
            for (size_t k = i + 1; k + 1 < end; ++k) {
                id += lower(s[k]);
            }
            push(Kind::Word, id);
            i = end;
            continue;
        }
        // x'..', b'..', X'..', B'..', N'..', _charset'..' literals.
        if ((c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'n' || c == 'N') &&
            i + 1 < s.size() && s[i + 1] == '\'') {
            i = skipQuoted(s, i + 1, '\'');
            push(Kind::Literal, "?");
            continue;
        }
        // Numbers: 12, 1.5, .5, 1e-3, 0x1F, 0b101; a leading sign where it is one.
        bool sign = (c == '-' || c == '+') && i + 1 < s.size() &&
                    (isDigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.') &&
                    literalBefore(t);
        if (isDigit(c) || sign ||
            (c == '.' && i + 1 < s.size() && isDigit(static_cast<unsigned char>(s[i + 1])) &&
             (t.empty() || t.back().kind == Kind::Punct))) {
            size_t j = i + (sign ? 1 : 0);
            if (j + 1 < s.size() && s[j] == '0' && (s[j + 1] == 'x' || s[j + 1] == 'b')) {
                j += 2;
                while (j < s.size() && isWord(static_cast<unsigned char>(s[j]))) {
                    ++j;
                }
            } else {
                while (j < s.size() && (isDigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) {
                    ++j;
                }
                if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
                    size_t k = j + 1;
                    if (k < s.size() && (s[k] == '-' || s[k] == '+')) {
                        ++k;
                    }
                    if (k < s.size() && isDigit(static_cast<unsigned char>(s[k]))) {
                        j = k;
                        while (j < s.size() && isDigit(static_cast<unsigned char>(s[j]))) {
                            ++j;
                        }
                    }
                }
            }
            // "1abc" is an identifier in MySQL; treat a trailing word as part of it.
            if (j < s.size() && isWordStart(static_cast<unsigned char>(s[j])) && !sign) {
                size_t k = i;
                std::string w;
                while (k < s.size() && isWord(static_cast<unsigned char>(s[k]))) {
                    w += lower(s[k++]);
                }
                push(Kind::Word, w);
                i = k;
                continue;
            }
            push(Kind::Literal, "?");
            i = j;
            continue;
        }
        if (isWordStart(c)) {
            std::string w;
            while (i < s.size() && isWord(static_cast<unsigned char>(s[i]))) {
                w += lower(s[i++]);
            }
            if (w.size() > 1 && w[0] == '_' && i < s.size() && s[i] == '\'') {
                continue;  // _utf8mb4'..': the charset introducer; the literal follows
            }
            if (w == "distinctrow") {
                w = "distinct";  // synonyms: one template (performance_schema does the same)
            }
            push(Kind::Word, w);
            continue;
        }
        // A prepared statement's placeholder is a literal slot too.
        if (c == '?') {
            push(Kind::Literal, "?");
            ++i;
            continue;
        }
        // Operators: multi-character ones stay together.
        static const char* const kOps[] = {
            "<=>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "<<", ">>", "->>", "->"};
        bool matched = false;
        for (const char* op : kOps) {
            std::string_view o(op);
            if (s.substr(i, o.size()) == o) {
                push(Kind::Punct, std::string(o));
                i += o.size();
                matched = true;
                break;
            }
        }
        if (!matched) {
            push(Kind::Punct, std::string(1, static_cast<char>(c)));
            ++i;
        }
    }
    return t;
}

// Collapses "( ? , ? , ... )" into "(?+)" and repeated "(?+) , (?+)" into one.
std::vector<Token> collapse(const std::vector<Token>& in) {
    std::vector<Token> out;
    for (size_t i = 0; i < in.size(); ++i) {
        // Only lists that performance_schema also collapses: after IN, and the rows of VALUES.
        bool afterListWord =
            !out.empty() && out.back().kind == Kind::Word &&
            (out.back().text == "in" || out.back().text == "values" || out.back().text == "value");
        bool nextRow =
            out.size() >= 2 && out.back().text == "," && out[out.size() - 2].text == "(?+)";
        if (in[i].kind == Kind::Punct && in[i].text == "(" && (afterListWord || nextRow)) {
            size_t j = i + 1;
            bool list = j < in.size() && in[j].kind == Kind::Literal;
            while (list && j < in.size() && in[j].kind == Kind::Literal) {
                ++j;
                if (j < in.size() && in[j].kind == Kind::Punct && in[j].text == ",") {
                    ++j;
                    list = j < in.size() && in[j].kind == Kind::Literal;
                } else {
                    break;
                }
            }
            if (list && j < in.size() && in[j].kind == Kind::Punct && in[j].text == ")") {
                // Repeated rows: drop ", (?+)" after a "(?+)".
                if (out.size() >= 2 && out.back().text == "," &&
                    out[out.size() - 2].text == "(?+)") {
                    out.pop_back();
                } else {
                    out.push_back({Kind::Literal, "(?+)"});
                }
                i = j;
                continue;
            }
        }
        out.push_back(in[i]);
    }
    return out;
}

}  // namespace

Fingerprint fingerprint(std::string_view sql, size_t maxOut) {
    std::vector<Token> tokens = collapse(tokenize(sql, 100000));
    // Trailing semicolons do not make another statement shape.
    while (!tokens.empty() && tokens.back().kind == Kind::Punct && tokens.back().text == ";") {
        tokens.pop_back();
    }
    Fingerprint f;
    for (size_t i = 0; i < tokens.size(); ++i) {
        const Token& tk = tokens[i];
        bool noSpaceBefore = i == 0 || tk.text == "," || tk.text == ")" || tk.text == "." ||
                             tk.text == ";" ||
                             (tokens[i - 1].kind == Kind::Punct &&
                              (tokens[i - 1].text == "(" || tokens[i - 1].text == "."));
        // "name(": no space between a word and the "(" after it (function calls, and also
        // IN(...) and VALUES(...): the rule is by tokens, so spacing in the SQL never matters).
        if ((tk.text == "(" || tk.text == "(?+)") && i > 0 && tokens[i - 1].kind == Kind::Word) {
            noSpaceBefore = true;
        }
        if (!noSpaceBefore) {
            f.text += ' ';
        }
        f.text += tk.text;
        if (f.text.size() > maxOut) {
            f.text.resize(maxOut);
            f.text += "...";
            break;
        }
    }
    f.id = fnv1a64(f.text);
    return f;
}

}  // namespace mp::mysql
