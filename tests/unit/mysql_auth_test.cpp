// SPDX-License-Identifier: Apache-2.0
// The MySQL client's password scrambles against PyMySQL 1.0.2's (pymysql._auth:
// scramble_native_password, scramble_caching_sha2), a client used against MySQL 8 servers; the
// vectors were computed with it (tests/unit/mysql_auth_vectors.py prints them again). The login
// exchange itself is tested by tests/compat/caching_sha2_test.py.
#include <doctest/doctest.h>

#include <mp/mysql_client.hpp>
#include <string>

namespace {

std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
        out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
    }
    return out;
}

std::string hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

}  // namespace

TEST_CASE("caching_sha2_password and mysql_native_password scrambles equal PyMySQL's") {
    struct Vector {
        const char* password;  // hex
        const char* nonce;     // hex, 20 bytes
        const char* sha2;
        const char* native;
    } vectors[] = {
        {"736563726574", "3031323334353637383930313233343536373839",
         "1a2da2573c2faa367e2afddb54cdfd11a95ed22eef0167151196a6fc8e3d3813",
         "7abe1a8776b59e931059451f81e596a60dbbf7a8"},
        {"", "3031323334353637383930313233343536373839", "", ""},
        {"50772d3966336b2d6e6f742d696e2d6c6f6773", "0102030405060708090a0b0c0d0e0f1011121314",
         "78a4b1f8b9f458c6e975eaa8163e1ff7594b5d906ea43e2979b8c79067962518",
         "346542885259ddd6b8606c462caee268ae603dc9"},
        {"70c3a4737377c3b6726420e282ac", "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
         "3e57ebce70c4b3530daea96d55823d5e30cc0126f9859705d407cfeef3c8920f",
         "527953707d2d68f87ad67eea70cf7343f302f9f0"},
        {"7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
         "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
         "787878787878787878787878",
         "6162636465666768696a0102030405060708090a",
         "7f667be805bc0b1f6030fc0d57d0b739aec880d83dbea038e4a62c03a0f0c38e",
         "a8b43cf45512995176a7e12f262b512c013b0754"},
    };
    for (const Vector& v : vectors) {
        CAPTURE(v.password);
        const std::string password = unhex(v.password);
        const std::string nonce = unhex(v.nonce);
        CHECK(hex(mp::mysql::cachingSha2Scramble(password, nonce)) == v.sha2);
        CHECK(hex(mp::mysql::nativePasswordScramble(password, nonce)) == v.native);
    }
}
