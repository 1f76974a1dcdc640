// SPDX-License-Identifier: Apache-2.0
#include "fingerprint.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mp::mysql {

uint64_t fnv1a64(std::string_view s) {
    uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : s) {
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

namespace {

// Character classes by table: the tokenizer asks for every byte of every statement.
enum : uint8_t { kWordStart = 1, kDigit = 2, kSpace = 4 };
constexpr std::array<uint8_t, 256> kClass = [] {
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80) {
            t[c] = kWordStart;
        } else if (c >= '0' && c <= '9') {
            t[c] = kDigit;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            t[c] = kSpace;
        }
    }
    return t;
}();
bool isWordStart(unsigned char c) { return (kClass[c] & kWordStart) != 0; }
bool isWord(unsigned char c) { return (kClass[c] & (kWordStart | kDigit)) != 0; }
bool isDigit(unsigned char c) { return (kClass[c] & kDigit) != 0; }
bool isSpace(unsigned char c) { return (kClass[c] & kSpace) != 0; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
// Short comparisons, inline: the token loop runs them for every token.
bool is(std::string_view a, char c) { return a.size() == 1 && a[0] == c; }
template <size_t N>
bool is(std::string_view a, const char (&lit)[N]) {
    return a.size() == N - 1 && __builtin_memcmp(a.data(), lit, N - 1) == 0;
}

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

enum class Kind { None, Word, Literal, Punct };

// Writes the normalised token stream straight into the output: one pass, no token objects.
// The output string is used as a plain buffer (sized up front, grown when needed, cut to
// length at the end), so a token costs a bounds check and a copy, not string calls.
class Writer {
  public:
    Writer(std::string& out, size_t maxOut, size_t hint) : out_(out), maxOut_(maxOut) {
        out_.resize(std::max<size_t>(hint, 32));
        buf_ = out_.data();
        cap_ = out_.size();
    }
    ~Writer() { out_.resize(n_); }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    bool full() const { return full_; }
    Kind prevKind() const { return prev_; }
    bool prevIsCloseParen() const { return prev_ == Kind::Punct && is(prevPunct_, ')'); }
    std::string_view prevWord() const {
        return prev_ == Kind::Word ? std::string_view(buf_ + wordStart_, n_ - wordStart_) : "";
    }

    void word(std::string_view raw) {
        space(false, false);
        ensure(raw.size());
        wordStart_ = n_;
        char* dst = buf_ + n_;
        for (char c : raw) {
            *dst++ = lower(c);
        }
        n_ += raw.size();
        if (is(std::string_view(buf_ + wordStart_, raw.size()), "distinctrow")) {
            n_ = wordStart_;
            put("distinct");  // synonyms: one template (performance_schema does the same)
        }
        after(Kind::Word, "");
        literalSeen(false);
    }

    void literal() {
        space(false, false);
        put('?');
        after(Kind::Literal, "");
        literalSeen(true);
    }

    void punct(std::string_view p) {
        bool open = is(p, '(');
        bool close = is(p, ')');
        bool comma = is(p, ',');
        bool tight = comma || close || is(p, '.') || is(p, ';');
        // Lists that performance_schema collapses too: after IN, VALUES, and the next rows.
        std::string_view w = prevWord();
        bool listWord = open && (is(w, "in") || is(w, "values") || is(w, "value"));
        bool nextRow = open && prev_ == Kind::Punct && is(prevPunct_, ',') && commaAfterList_;
        space(tight, open);
        size_t at = n_;
        put(p);
        if (open) {
            if (!stack_.empty()) {
                stack_.back().onlyLiterals = false;  // a nested list is no literal
            }
            if (stack_.size() < stack_.capacity()) {
                stack_.push_back({at, listWord || nextRow, nextRow, true, true, false});
            }
            after(Kind::Punct, p);
            return;
        }
        if (close) {
            if (!stack_.empty()) {
                Open o = stack_.back();
                stack_.pop_back();
                if (o.collapsible && o.onlyLiterals && o.sawLiteral && !o.expectLiteral) {
                    n_ = o.outPos;
                    if (o.row) {
                        // ", (?+)" after a "(?+)": the rows of VALUES are one template.
                        n_ = commaPos_;
                    } else {
                        put("(?+)");
                    }
                    after(Kind::Literal, "");
                    listEnd_ = n_;
                    literalSeen(true);
                    check();
                    return;
                }
            }
            after(Kind::Punct, p);
            literalSeen(false);
            return;
        }
        commaAfterList_ = comma && listEnd_ == at;
        if (commaAfterList_) {
            commaPos_ = at;
        }
        if (!stack_.empty()) {
            Open& o = stack_.back();
            if (comma && !o.expectLiteral) {
                o.expectLiteral = true;
            } else {
                o.onlyLiterals = false;
            }
        }
        after(Kind::Punct, p);
    }

    void finish() {
        while (!full_ && n_ > 0 && buf_[n_ - 1] == ';') {
            --n_;  // trailing semicolons do not make another shape
        }
    }

  private:
    struct Open {
        size_t outPos;
        bool collapsible;
        bool row;
        bool onlyLiterals;
        bool expectLiteral;
        bool sawLiteral;
    };

    void ensure(size_t more) {
        if (n_ + more > cap_) {
            out_.resize(std::max(cap_ * 2, n_ + more));
            buf_ = out_.data();
            cap_ = out_.size();
        }
    }
    void put(char c) {
        ensure(1);
        buf_[n_++] = c;
    }
    void put(std::string_view v) {
        ensure(v.size());
        std::memcpy(buf_ + n_, v.data(), v.size());
        n_ += v.size();
    }
    void space(bool tight, bool open) {
        if (n_ == 0 || tight) {
            return;
        }
        if (prev_ == Kind::Punct && (is(prevPunct_, '(') || is(prevPunct_, '.'))) {
            return;
        }
        if (open && prev_ == Kind::Word) {
            return;  // "name(": function calls, and IN( / VALUES( by the same token rule
        }
        put(' ');
    }
    void after(Kind k, std::string_view p) {
        prev_ = k;
        prevPunct_ = p;
        check();
    }
    void check() {
        if (n_ > maxOut_) {
            n_ = maxOut_;
            put("...");
            full_ = true;
        }
    }
    void literalSeen(bool isLiteral) {
        if (stack_.empty()) {
            return;
        }
        Open& o = stack_.back();
        if (isLiteral && o.expectLiteral) {
            o.expectLiteral = false;
            o.sawLiteral = true;
        } else {
            o.onlyLiterals = false;
        }
    }

    std::string& out_;
    char* buf_ = nullptr;
    size_t n_ = 0;
    size_t cap_ = 0;
    size_t maxOut_;
    bool full_ = false;
    Kind prev_ = Kind::None;
    std::string_view prevPunct_;  // static strings only
    size_t wordStart_ = 0;
    size_t listEnd_ = std::string::npos;  // where the last collapsed list ended
    bool commaAfterList_ = false;
    size_t commaPos_ = 0;
    // Bounded nesting: deeper parentheses are written but not tracked as lists. Entries are
    // written before they are read, so the array is left uninitialised.
    struct Stack {
        std::array<Open, 64> items;
        size_t n = 0;
        bool empty() const { return n == 0; }
        size_t size() const { return n; }
        size_t capacity() const { return items.size(); }
        Open& back() { return items[n - 1]; }
        void push_back(const Open& o) { items[n++] = o; }
        void pop_back() { --n; }
    } stack_;
};

// Keywords after which a '-' or '+' is a sign (lower case, as the writer keeps words).
bool takesOperand(std::string_view word) {
    static const std::string_view kOps[] = {
        "select",  "where",  "and",    "or",   "not",  "in",   "values", "set",
        "by",      "limit",  "offset", "when", "then", "else", "is",     "like",
        "between", "return", "having", "on",   "xor",  "div",  "mod",    "interval"};
    for (std::string_view k : kOps) {
        if (word.size() == k.size() && word[0] == k[0] && word == k) {
            return true;
        }
    }
    return false;
}

bool operandExpected(const Writer& w) {
    // A '-' or '+' is a sign (part of the literal) unless it follows an operand.
    switch (w.prevKind()) {
        case Kind::None:
            return true;
        case Kind::Literal:
            return false;
        case Kind::Punct:
            return !w.prevIsCloseParen();
        case Kind::Word:
            return takesOperand(w.prevWord());
    }
    return false;
}

// One-character punctuation as static strings (the writer keeps views of them).
std::string_view punctText(char c) {
    static const auto kTable = [] {
        std::array<std::array<char, 2>, 256> t{};
        for (size_t i = 0; i < t.size(); ++i) {
            t[i][0] = static_cast<char>(i);
        }
        return t;
    }();
    return std::string_view(kTable[static_cast<unsigned char>(c)].data(), 1);
}

void tokenize(std::string_view s, Writer& w);

}  // namespace

Fingerprint fingerprint(std::string_view s, size_t maxOut) {
    Fingerprint f;
    f.id = fingerprintInto(s, f.text, maxOut);
    return f;
}

uint64_t fingerprintInto(std::string_view s, std::string& out, size_t maxOut) {
    {
        Writer w(out, maxOut, std::min(s.size() * 2, maxOut) + 16);
        tokenize(s, w);
    }
    return fnv1a64(out);
}

namespace {

void tokenize(std::string_view s, Writer& w) {
    size_t i = 0;
    bool versioned = false;  // inside /*! ... */ or /*M! ... */
    while (i < s.size() && !w.full()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (isSpace(c)) {
            ++i;
            continue;
        }
        if (versioned && c == '*' && i + 1 < s.size() && s[i + 1] == '/') {
            versioned = false;  // the end of a versioned comment
            i += 2;
            continue;
        }
        // Versioned comments are SQL to the server (MySQL's /*!50100 ... */, MariaDB's
        // /*M!100100 ... */): their body is tokenized, without the marker and version.
        if (!versioned && c == '/' && i + 2 < s.size() && s[i + 1] == '*' &&
            (s[i + 2] == '!' || (s[i + 2] == 'M' && i + 3 < s.size() && s[i + 3] == '!'))) {
            i += s[i + 2] == '!' ? 3 : 4;
            for (size_t d = 0; d < 6 && i < s.size() && isDigit(static_cast<unsigned char>(s[i]));
                 ++d) {
                ++i;
            }
            versioned = true;
            continue;
        }
        // Comments (optimizer hints included).
        if (c == '#' || (c == '-' && i + 1 < s.size() && s[i + 1] == '-' &&
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
            w.literal();
            continue;
        }
        // Quoted identifiers keep their text (lower-cased), without the backticks.
        if (c == '`') {
            size_t end = skipQuoted(s, i, '`');
            size_t stop = end > i + 1 && s[end - 1] == '`' ? end - 1 : end;
            w.word(s.substr(i + 1, stop - i - 1));
            i = end;
            continue;
        }
        // x'..', b'..', n'..' literals.
        if ((c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'n' || c == 'N') &&
            i + 1 < s.size() && s[i + 1] == '\'') {
            i = skipQuoted(s, i + 1, '\'');
            w.literal();
            continue;
        }
        // Numbers: 12, 1.5, .5, 1e-3, 0x1F, 0b101; a leading sign where it is one.
        bool sign = (c == '-' || c == '+') && i + 1 < s.size() &&
                    (isDigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.') &&
                    operandExpected(w);
        if (isDigit(c) || sign ||
            (c == '.' && i + 1 < s.size() && isDigit(static_cast<unsigned char>(s[i + 1])) &&
             (w.prevKind() == Kind::None || w.prevKind() == Kind::Punct))) {
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
            // "1abc" is an identifier in MySQL.
            if (j < s.size() && isWordStart(static_cast<unsigned char>(s[j])) && !sign) {
                size_t k = i;
                while (k < s.size() && isWord(static_cast<unsigned char>(s[k]))) {
                    ++k;
                }
                w.word(s.substr(i, k - i));
                i = k;
                continue;
            }
            w.literal();
            i = j;
            continue;
        }
        if (isWordStart(c)) {
            size_t k = i;
            while (k < s.size() && isWord(static_cast<unsigned char>(s[k]))) {
                ++k;
            }
            std::string_view word = s.substr(i, k - i);
            i = k;
            if (word.size() > 1 && word[0] == '_' && i < s.size() && s[i] == '\'') {
                continue;  // _utf8mb4'..': the charset introducer; the literal follows
            }
            w.word(word);
            continue;
        }
        if (c == '?') {  // a prepared statement's placeholder is a literal slot too
            w.literal();
            ++i;
            continue;
        }
        static const std::string_view kOps[] = {
            "<=>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "<<", ">>", "->>", "->"};
        bool matched = false;
        for (std::string_view op : kOps) {
            if (op[0] == c && s.substr(i, op.size()) == op) {
                w.punct(op);
                i += op.size();
                matched = true;
                break;
            }
        }
        if (!matched) {
            w.punct(punctText(static_cast<char>(c)));
            ++i;
        }
    }
    w.finish();
}

}  // namespace

std::string maskLiterals(std::string_view s, size_t maxOut) {
    std::string out;
    out.reserve(std::min(s.size(), maxOut) + 3);
    // The last token written: its last character (0 when none) and, for a word, the word.
    auto last = [&out](std::string& word) -> char {
        size_t e = out.size();
        while (e > 0 && isSpace(static_cast<unsigned char>(out[e - 1]))) {
            --e;
        }
        size_t b = e;
        while (b > 0 && isWord(static_cast<unsigned char>(out[b - 1]))) {
            --b;
        }
        word.clear();
        for (size_t k = b; k < e; ++k) {
            word += lower(out[k]);
        }
        return e == 0 ? '\0' : out[e - 1];
    };
    auto literalOrWord = [](char p) {
        return isWord(static_cast<unsigned char>(p)) || p == '?' || p == '`' || p == '\'' ||
               p == '"';
    };
    std::string word;
    // Whether a '-' or '+' before a number is its sign: after nothing, an operator, an opening
    // parenthesis, a comma or a keyword that takes an operand (as the fingerprint decides).
    auto signExpected = [&] {
        const char p = last(word);
        if (p == '\0') {
            return true;
        }
        if (p == ')' || (literalOrWord(p) && word.empty())) {
            return false;
        }
        return word.empty() || takesOperand(word);
    };
    // Whether the last token written is nothing or punctuation (a '.' then starts a number,
    // as `.5`; after a word or a literal it is a qualifier's dot, as in the fingerprint).
    auto afterPunct = [&] { return !literalOrWord(last(word)); };
    size_t i = 0;
    while (i < s.size() && out.size() < maxOut) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '/' && i + 2 < s.size() && s[i + 1] == '*' &&
            (s[i + 2] == '!' || s[i + 2] == '+' ||
             (s[i + 2] == 'M' && i + 3 < s.size() && s[i + 3] == '!'))) {
            // A versioned comment or a hint: SQL, masked like the rest; the marker and a
            // version stay as they are.
            size_t j = i + (s[i + 2] == 'M' ? 4 : 3);
            for (size_t d = 0; d < 6 && s[i + 2] != '+' && j < s.size() &&
                               isDigit(static_cast<unsigned char>(s[j]));
                 ++d) {
                ++j;
            }
            out.append(s.substr(i, j - i));
            i = j;
            continue;
        }
        if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
            size_t end = s.find("*/", i + 2);
            i = end == std::string_view::npos ? s.size() : end + 2;
            out += ' ';
            continue;
        }
        if (c == '#' || (c == '-' && i + 1 < s.size() && s[i + 1] == '-' &&
                         (i + 2 == s.size() || isSpace(static_cast<unsigned char>(s[i + 2]))))) {
            size_t nl = s.find('\n', i);
            i = nl == std::string_view::npos ? s.size() : nl;
            continue;
        }
        if (c == '\'' || c == '"') {
            i = skipQuoted(s, i, static_cast<char>(c));
            out += '?';
            continue;
        }
        if (c == '`') {
            size_t end = skipQuoted(s, i, '`');
            out.append(s.substr(i, end - i));
            i = end;
            continue;
        }
        if ((c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'n' || c == 'N') &&
            i + 1 < s.size() && s[i + 1] == '\'' &&
            (out.empty() || !isWord(static_cast<unsigned char>(out.back())))) {
            i = skipQuoted(s, i + 1, '\'');
            out += '?';
            continue;
        }
        if (isWordStart(c)) {  // a word, digits included (sbtest1)
            size_t j = i;
            while (j < s.size() && isWord(static_cast<unsigned char>(s[j]))) {
                ++j;
            }
            if (c == '_' && j < s.size() && (s[j] == '\'' || s[j] == '"')) {
                i = skipQuoted(s, j, s[j]);  // _utf8mb4'..': a character set and its string
                out += '?';
                continue;
            }
            out.append(s.substr(i, j - i));
            i = j;
            continue;
        }
        const bool sign = (c == '-' || c == '+') && i + 1 < s.size() &&
                          (isDigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.') &&
                          signExpected();
        if (isDigit(c) || sign ||
            (c == '.' && i + 1 < s.size() && isDigit(static_cast<unsigned char>(s[i + 1])) &&
             afterPunct())) {
            size_t j = i + (sign ? 1 : 0);
            // digits, a point, an exponent with its sign, and 0x../0b.. words: one literal
            while (j < s.size()) {
                const unsigned char d = static_cast<unsigned char>(s[j]);
                if (isWord(d) || d == '.') {
                    ++j;
                } else if ((d == '-' || d == '+') && (s[j - 1] == 'e' || s[j - 1] == 'E')) {
                    ++j;
                } else {
                    break;
                }
            }
            out += '?';
            i = j;
            continue;
        }
        out += static_cast<char>(c);
        ++i;
    }
    if (i < s.size() || out.size() > maxOut) {  // a long word or identifier may pass the bound
        out.resize(std::min(out.size(), maxOut));
        out += "...";
    }
    return out;
}

namespace {

// Shape scan classes: what a byte can start.
enum : uint8_t {
    kPlain = 0,
    kWordByte = 1,
    kDigitByte = 2,
    kQuote = 3,
    kBail = 4,
    kDash = 5,
    kSlash = 6
};
// Word and digit bytes are the tokenizer's own (kClass): the scan must agree with it.
constexpr std::array<uint8_t, 256> kShapeClass = [] {
    std::array<uint8_t, 256> t{};
    for (size_t c = 0; c < t.size(); ++c) {
        t[c] = (kClass[c] & kWordStart) != 0 ? kWordByte
               : (kClass[c] & kDigit) != 0   ? kDigitByte
                                             : kPlain;
    }
    t['\''] = kQuote;
    t['"'] = kBail;
    t['`'] = kBail;
    t['#'] = kBail;
    t['\\'] = kBail;
    t['-'] = kDash;
    t['/'] = kSlash;
    return t;
}();

uint64_t mix(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

// A run of plain bytes: its length, then its bytes 8 at a time (so segments cannot be confused).
// The last partial word is read with fixed-size loads: the last 8 bytes of the run again
// (overlapping; the length is in the hash), or two overlapping halves, or three bytes.
uint64_t mixBytes(uint64_t h, const char* p, size_t n) {
    h = mix(h ^ (n * 0x9e3779b97f4a7c15ULL));
    const char* end = p + n;
    const bool wide = n >= 8;
    while (n >= 8) {
        uint64_t w = 0;
        std::memcpy(&w, p, 8);
        h = mix(h ^ w);
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        if (wide) {
            std::memcpy(&w, end - 8, 8);
        } else if (n >= 4) {
            uint32_t a = 0;
            uint32_t b = 0;
            std::memcpy(&a, p, 4);
            std::memcpy(&b, end - 4, 4);
            w = a | (static_cast<uint64_t>(b) << 32);
        } else {
            w = static_cast<uint8_t>(p[0]) |
                (static_cast<uint64_t>(static_cast<uint8_t>(p[n / 2])) << 8) |
                (static_cast<uint64_t>(static_cast<uint8_t>(end[-1])) << 16);
        }
        h = mix(h ^ w ^ 0xa0761d6478bd642fULL);
    }
    return h;
}

constexpr size_t kMaxMemoText = 512;  // longer fingerprints are not memoised
constexpr uint64_t kNumberMark = 0xe7037ed1a0b428dbULL;
constexpr uint64_t kStringMark = 0x8ebc6af09c88c6e3ULL;

// The bytes the shape scan stops at: everything but plain and word bytes (digits, quotes,
// comment starts, bail bytes). The vector scan below tests exactly this set.
constexpr bool scanStop(unsigned char c) {
    return (c >= '0' && c <= '9') || c == '\'' || c == '-' || c == '/' || c == '"' || c == '`' ||
           c == '#' || c == '\\';
}
static_assert([] {
    for (size_t c = 0; c < 256; ++c) {
        if (scanStop(static_cast<unsigned char>(c)) != (kShapeClass[c] > kWordByte)) {
            return false;
        }
    }
    return true;
}());

// Finds the stops of one statement, 16 bytes at a time: the mask of a block serves every stop
// in it. Blocks never reach past the statement (the last one overlaps the one before).
class StopScanner {
  public:
    StopScanner(const char* d, size_t n) : d_(d), n_(n), base_(n) {}

    // The first stop at or after i (n when none).
    size_t next(size_t i) {
#if defined(__SSE2__)
        if (n_ >= 16) {
            while (i < n_) {
                if (i < base_ || i >= base_ + 16) {
                    base_ = std::min(i, n_ - 16);
                    mask_ = blockMask(d_ + base_);
                }
                unsigned bits = mask_ >> (i - base_);
                if (bits != 0) {
                    return i + static_cast<size_t>(__builtin_ctz(bits));
                }
                i = base_ + 16;
            }
            return n_;
        }
#endif
        while (i < n_ && kShapeClass[static_cast<unsigned char>(d_[i])] <= kWordByte) {
            ++i;
        }
        return i;
    }

  private:
#if defined(__SSE2__)
    static unsigned blockMask(const char* p) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // Signed compares: bytes from 0x80 are negative, never digits.
        __m128i m = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
                                  _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('\'')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('/')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('"')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('`')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('#')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')));
        return static_cast<unsigned>(_mm_movemask_epi8(m));
    }
#endif
    const char* d_;
    size_t n_;
    size_t base_;  // start of the block in mask_ (n_: none yet)
    unsigned mask_ = 0;
};

}  // namespace

bool FingerprintCache::shape(std::string_view s, size_t maxOut, uint64_t& hash) {
    uint64_t h = mix(maxOut ^ 0x589965cc75374cc3ULL);
    const char* d = s.data();
    const size_t n = s.size();
    size_t seg = 0;  // start of the plain run not hashed yet
    size_t i = 0;
    // Plain and word bytes are skipped (they are hashed by runs); the scan looks only at the
    // stops. A word is never split: a digit right after a word byte belongs to the word
    // (sbtest1), as the tokenizer has it; a number never ends in a word byte (that bails).
    StopScanner stops(d, n);
    while ((i = stops.next(i)) < n) {
        switch (kShapeClass[static_cast<unsigned char>(d[i])]) {
            case kDigitByte: {
                if (i > 0 && isWord(static_cast<unsigned char>(d[i - 1]))) {
                    ++i;
                    while (i < n && isWord(static_cast<unsigned char>(d[i]))) {
                        ++i;
                    }
                    break;
                }
                // The tokenizer's number: digits and dots (1.5, 1.2.3); what follows decides.
                size_t j = i + 1;
                while (j < n && (kShapeClass[static_cast<unsigned char>(d[j])] == kDigitByte ||
                                 d[j] == '.')) {
                    ++j;
                }
                if (j < n && kShapeClass[static_cast<unsigned char>(d[j])] == kWordByte) {
                    return false;  // 1e5, 0x1F, 1abc, 5.x: forms left to the tokenizer
                }
                h = mix(mixBytes(h, d + seg, i - seg) ^ kNumberMark);
                seg = i = j;
                break;
            }
            case kQuote: {
                if (i > 0 && kShapeClass[static_cast<unsigned char>(d[i - 1])] == kWordByte) {
                    return false;  // x'..', b'..', n'..', _utf8mb4'..'
                }
                size_t j = i + 1;
                while (true) {  // to the closing quote ('' is a quote inside), by memchr
                    const void* q = std::memchr(d + j, '\'', n - j);
                    size_t end =
                        q == nullptr ? n : static_cast<size_t>(static_cast<const char*>(q) - d);
                    if (end == n || std::memchr(d + j, '\\', end - j) != nullptr) {
                        return false;  // unterminated, or escapes
                    }
                    if (end + 1 < n && d[end + 1] == '\'') {
                        j = end + 2;
                        continue;
                    }
                    j = end;
                    break;
                }
                h = mix(mixBytes(h, d + seg, i + 1 - seg) ^ kStringMark);
                seg = j;  // the closing quote starts the next plain run
                i = j + 1;
                break;
            }
            case kDash:
                if (i + 1 < n && d[i + 1] == '-') {
                    return false;  // a -- comment, or what may look like one
                }
                ++i;
                break;
            case kSlash:
                if (i + 1 < n && d[i + 1] == '*') {
                    return false;  // a comment or an optimizer hint
                }
                ++i;
                break;
            default:
                return false;
        }
    }
    hash = mixBytes(h, d + seg, n - seg);
    return true;
}

FingerprintCache::FingerprintCache(size_t slots) {
    size_t n = 1;
    while (n < slots) {
        n <<= 1;
    }
    slots_.resize(n);
}

uint64_t FingerprintCache::fingerprintInto(std::string_view sql, std::string& out, size_t maxOut) {
    uint64_t h = 0;
    if (!shape(sql, maxOut, h)) {
        ++stats_.unmemoisable;
        return mysql::fingerprintInto(sql, out, maxOut);
    }
    Slot& slot = slots_[h & (slots_.size() - 1)];
    if (slot.used && slot.shape == h) {
        ++stats_.hits;
        out.assign(slot.text);
        return slot.id;
    }
    ++stats_.misses;
    uint64_t id = mysql::fingerprintInto(sql, out, maxOut);
    if (out.size() > kMaxMemoText) {
        return id;  // memory stays small: 4096 slots of at most 512 bytes
    }
    slot.used = true;
    slot.shape = h;
    slot.id = id;
    slot.text.assign(out);
    return id;
}

FingerprintCache& threadFingerprintCache() {
    thread_local FingerprintCache cache;
    return cache;
}

}  // namespace mp::mysql
