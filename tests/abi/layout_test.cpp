// SPDX-License-Identifier: Apache-2.0
// Freezes the plugin ABI: the layout of every struct of mp/abi.h (x86_64, checked at compile
// time), the types of their members, the values of the constants, and the exact text of the
// header (its SHA-256 is recorded in tests/abi/abi.h.sha256 with the ABI version).
//
// When one of these fails, the change to abi.h is an ABI change. Within a major, only appending
// members at the END of a struct that starts with struct_size is allowed, with MP_ABI_MINOR
// bumped; then update the struct's size below, the hash file and docs/plugin-abi.md.
#include <doctest/doctest.h>
#include <mp/abi.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "support/process.hpp"

namespace {

// ---- layout -----------------------------------------------------------------------------------

#define MP_MOVED " moved or changed type: an ABI break (nothing is reordered or retyped in a major)"
#define MP_GREW " changed size: appending needs MP_ABI_MINOR bumped and this size updated"

// MP_MEMBER(struct, member, offset, type): offset and type of one member.
#define MP_MEMBER(S, m, off, ...)                               \
    static_assert(offsetof(S, m) == (off), #S "." #m MP_MOVED); \
    static_assert(std::is_same_v<decltype(S::m), __VA_ARGS__>, #S "." #m MP_MOVED)

#define MP_SIZE(S, size) static_assert(sizeof(S) == (size), #S MP_GREW)

#if defined(__x86_64__) && defined(__LP64__)
constexpr bool kLayoutChecked = true;

MP_SIZE(mp_str, 16);
MP_MEMBER(mp_str, data, 0, const char*);
MP_MEMBER(mp_str, len, 8, size_t);

MP_SIZE(mp_bytes, 16);
MP_MEMBER(mp_bytes, data, 0, const uint8_t*);
MP_MEMBER(mp_bytes, len, 8, size_t);

MP_SIZE(mp_property, 56);
MP_MEMBER(mp_property, name, 0, const char*);
MP_MEMBER(mp_property, type, 8, uint32_t);
MP_MEMBER(mp_property, flags, 12, uint32_t);
MP_MEMBER(mp_property, default_value, 16, const char*);
MP_MEMBER(mp_property, description, 24, const char*);
MP_MEMBER(mp_property, min, 32, int64_t);
MP_MEMBER(mp_property, max, 40, int64_t);
MP_MEMBER(mp_property, choices, 48, const char*);

MP_SIZE(mp_event, 56);
MP_MEMBER(mp_event, struct_size, 0, uint32_t);
MP_MEMBER(mp_event, type, 4, uint32_t);
MP_MEMBER(mp_event, ts_ns, 8, uint64_t);
MP_MEMBER(mp_event, seq, 16, uint64_t);
MP_MEMBER(mp_event, content_type, 24, mp_str);
MP_MEMBER(mp_event, payload, 40, mp_bytes);

MP_SIZE(mp_frame, 40);
MP_MEMBER(mp_frame, ts_ns, 0, uint64_t);
MP_MEMBER(mp_frame, link_type, 8, uint32_t);
MP_MEMBER(mp_frame, orig_len, 12, uint32_t);
MP_MEMBER(mp_frame, source, 16, uint32_t);
MP_MEMBER(mp_frame, flags, 20, uint32_t);
MP_MEMBER(mp_frame, data, 24, mp_bytes);

MP_SIZE(mp_flow, 64);
MP_MEMBER(mp_flow, struct_size, 0, uint32_t);
MP_MEMBER(mp_flow, flags, 4, uint32_t);
MP_MEMBER(mp_flow, id, 8, uint64_t);
MP_MEMBER(mp_flow, ip_version, 16, uint8_t);
MP_MEMBER(mp_flow, pad, 17, uint8_t[3]);
MP_MEMBER(mp_flow, client_port, 20, uint16_t);
MP_MEMBER(mp_flow, server_port, 22, uint16_t);
MP_MEMBER(mp_flow, client_ip, 24, uint8_t[16]);
MP_MEMBER(mp_flow, server_ip, 40, uint8_t[16]);
MP_MEMBER(mp_flow, ts_ns, 56, uint64_t);

MP_SIZE(mp_http_request, 120);
MP_MEMBER(mp_http_request, struct_size, 0, uint32_t);
MP_MEMBER(mp_http_request, reserved, 4, uint32_t);
MP_MEMBER(mp_http_request, method, 8, mp_str);
MP_MEMBER(mp_http_request, path, 24, mp_str);
MP_MEMBER(mp_http_request, query, 40, mp_str);
MP_MEMBER(mp_http_request, body, 56, mp_str);
MP_MEMBER(mp_http_request, remote_addr, 72, mp_str);
MP_MEMBER(mp_http_request, impl, 88, const void*);
MP_MEMBER(mp_http_request, role, 96, uint32_t);  // 1.2
MP_MEMBER(mp_http_request, reserved2, 100, uint32_t);
MP_MEMBER(mp_http_request, principal, 104, mp_str);

static_assert(
    std::is_same_v<mp_http_handler, void (*)(void*, const mp_http_request*, mp_http_response*)>,
    "mp_http_handler" MP_MOVED);

MP_SIZE(mp_ws_handler, 72);
MP_MEMBER(mp_ws_handler, struct_size, 0, uint32_t);
MP_MEMBER(mp_ws_handler, flags, 4, uint32_t);  // "reserved" before 1.5
MP_MEMBER(mp_ws_handler, user, 8, void*);
MP_MEMBER(mp_ws_handler, on_open, 16, mp_status (*)(void*, mp_ws_conn*, const mp_http_request*));
MP_MEMBER(mp_ws_handler, on_message, 24, void (*)(void*, mp_ws_conn*, uint32_t, mp_bytes));
MP_MEMBER(mp_ws_handler, on_close, 32, void (*)(void*, mp_ws_conn*));
MP_MEMBER(mp_ws_handler, ping_interval_ms, 40, uint32_t);  // 1.1
MP_MEMBER(mp_ws_handler, idle_timeout_ms, 44, uint32_t);
MP_MEMBER(mp_ws_handler, write_timeout_ms, 48, uint32_t);
MP_MEMBER(mp_ws_handler, max_message_bytes, 52, uint32_t);
MP_MEMBER(mp_ws_handler, queue_messages, 56, uint32_t);
MP_MEMBER(mp_ws_handler, role, 60, uint32_t);  // 1.2
MP_MEMBER(mp_ws_handler, reserved2, 64, uint32_t);

MP_SIZE(mp_route, 32);  // 1.2
MP_MEMBER(mp_route, struct_size, 0, uint32_t);
MP_MEMBER(mp_route, role, 4, uint32_t);
MP_MEMBER(mp_route, methods, 8, uint32_t);
MP_MEMBER(mp_route, reserved, 12, uint32_t);
MP_MEMBER(mp_route, handler, 16, mp_http_handler);
MP_MEMBER(mp_route, user, 24, void*);

MP_SIZE(mp_host_api, 248);
MP_MEMBER(mp_host_api, struct_size, 0, uint32_t);
MP_MEMBER(mp_host_api, abi_major, 4, uint16_t);
MP_MEMBER(mp_host_api, abi_minor, 6, uint16_t);
MP_MEMBER(mp_host_api, log, 8, void (*)(mp_host*, int, mp_str));
MP_MEMBER(mp_host_api, set_error, 16, void (*)(mp_host*, mp_status, mp_str));
MP_MEMBER(mp_host_api, config_get_str, 24, mp_status (*)(const mp_config*, const char*, mp_str*));
MP_MEMBER(mp_host_api, config_get_i64, 32, mp_status (*)(const mp_config*, const char*, int64_t*));
MP_MEMBER(mp_host_api, config_get_f64, 40, mp_status (*)(const mp_config*, const char*, double*));
MP_MEMBER(mp_host_api, config_get_bool, 48, mp_status (*)(const mp_config*, const char*, int*));
MP_MEMBER(mp_host_api, config_get_list_size, 56,
          mp_status (*)(const mp_config*, const char*, size_t*));
MP_MEMBER(mp_host_api, config_get_list_item, 64,
          mp_status (*)(const mp_config*, const char*, size_t, mp_str*));
MP_MEMBER(mp_host_api, host_get, 72, mp_status (*)(mp_host*, const char*, mp_str*));
MP_MEMBER(mp_host_api, emit, 80, mp_status (*)(mp_host*, const mp_event*));
MP_MEMBER(mp_host_api, emit_frames, 88, mp_status (*)(mp_host*, const mp_frame*, size_t));
MP_MEMBER(mp_host_api, now_ns, 96, uint64_t (*)(mp_host*));
MP_MEMBER(mp_host_api, counter_register, 104,
          mp_counter* (*)(mp_host*, const char*, const char*, uint32_t));
MP_MEMBER(mp_host_api, counter_add, 112, void (*)(mp_counter*, uint64_t));
MP_MEMBER(mp_host_api, counter_set, 120, void (*)(mp_counter*, int64_t));
MP_MEMBER(mp_host_api, timer_start, 128,
          mp_timer* (*)(mp_host*, uint64_t, uint64_t, void (*)(void*), void*));
MP_MEMBER(mp_host_api, timer_stop, 136, void (*)(mp_timer*));
MP_MEMBER(mp_host_api, http_route, 144,
          mp_status (*)(mp_host*, const char*, mp_http_handler, void*));
MP_MEMBER(mp_host_api, http_reply, 152, void (*)(mp_http_response*, int, mp_str, mp_str));
MP_MEMBER(mp_host_api, http_query_param, 160,
          mp_status (*)(const mp_http_request*, const char*, mp_str*));
MP_MEMBER(mp_host_api, ws_endpoint, 168,
          mp_status (*)(mp_host*, const char*, const mp_ws_handler*));
MP_MEMBER(mp_host_api, ws_send, 176, mp_status (*)(mp_ws_conn*, uint32_t, mp_bytes));
MP_MEMBER(mp_host_api, ws_close, 184, void (*)(mp_ws_conn*, uint16_t, mp_str));
MP_MEMBER(mp_host_api, request_shutdown, 192, void (*)(mp_host*, int, mp_str));
MP_MEMBER(mp_host_api, http_route_ex, 200,  // 1.2
          mp_status (*)(mp_host*, const char*, const mp_route*));
MP_MEMBER(mp_host_api, http_header, 208,
          mp_status (*)(const mp_http_request*, const char*, mp_str*));
MP_MEMBER(mp_host_api, host_set, 216, mp_status (*)(mp_host*, const char*, mp_str));  // 1.3
MP_MEMBER(mp_host_api, emit_record, 224, mp_status (*)(mp_host*, const mp_record*));  // 1.4
MP_MEMBER(mp_host_api, record_done, 232, void (*)(mp_host*, uint64_t, mp_status));
MP_MEMBER(mp_host_api, emit_records, 240,
          mp_status (*)(mp_host*, const mp_record* const*, size_t, size_t*));

MP_SIZE(mp_plugin, 160);
MP_MEMBER(mp_plugin, struct_size, 0, uint32_t);
MP_MEMBER(mp_plugin, abi_major, 4, uint16_t);
MP_MEMBER(mp_plugin, abi_minor, 6, uint16_t);
MP_MEMBER(mp_plugin, kind, 8, uint32_t);
MP_MEMBER(mp_plugin, flags, 12, uint32_t);
MP_MEMBER(mp_plugin, name, 16, const char*);
MP_MEMBER(mp_plugin, version, 24, const char*);
MP_MEMBER(mp_plugin, description, 32, const char*);
MP_MEMBER(mp_plugin, properties, 40, const mp_property*);
MP_MEMBER(mp_plugin, create, 48,
          mp_status (*)(mp_host*, const mp_host_api*, const mp_config*, void**));
MP_MEMBER(mp_plugin, start, 56, mp_status (*)(void*));
MP_MEMBER(mp_plugin, stop, 64, void (*)(void*));
MP_MEMBER(mp_plugin, destroy, 72, void (*)(void*));
MP_MEMBER(mp_plugin, on_event, 80, mp_status (*)(void*, const mp_event*));
MP_MEMBER(mp_plugin, on_tick, 88, void (*)(void*, uint64_t));
MP_MEMBER(mp_plugin, stream_open, 96, mp_status (*)(void*, const mp_flow*, void**));
MP_MEMBER(mp_plugin, stream_data, 104, void (*)(void*, void*, uint32_t, mp_bytes, uint64_t));
MP_MEMBER(mp_plugin, stream_gap, 112, void (*)(void*, void*, uint32_t, uint64_t, uint64_t));
MP_MEMBER(mp_plugin, stream_close, 120, void (*)(void*, void*, uint32_t, uint64_t));
MP_MEMBER(mp_plugin, collect, 128, void* (*)(void*, uint64_t, uint64_t));  // 1.3
MP_MEMBER(mp_plugin, report, 136, mp_status (*)(void*, void* const*, size_t, const mp_writer*));
MP_MEMBER(mp_plugin, on_record, 144, mp_status (*)(void*, const mp_record*, uint64_t));  // 1.4
MP_MEMBER(mp_plugin, on_delivered, 152, void (*)(void*, uint64_t));

MP_SIZE(mp_record, 120);  // 1.4
MP_MEMBER(mp_record, struct_size, 0, uint32_t);
MP_MEMBER(mp_record, flags, 4, uint32_t);
MP_MEMBER(mp_record, stream, 8, mp_str);
MP_MEMBER(mp_record, key, 24, mp_str);
MP_MEMBER(mp_record, id, 40, mp_str);
MP_MEMBER(mp_record, content_type, 56, mp_str);
MP_MEMBER(mp_record, payload, 72, mp_bytes);
MP_MEMBER(mp_record, ts_ns, 88, uint64_t);
MP_MEMBER(mp_record, seq, 96, uint64_t);
MP_MEMBER(mp_record, producer, 104, mp_str);

MP_SIZE(mp_writer, 24);  // 1.3
MP_MEMBER(mp_writer, struct_size, 0, uint32_t);
MP_MEMBER(mp_writer, reserved, 4, uint32_t);
MP_MEMBER(mp_writer, ctx, 8, void*);
MP_MEMBER(mp_writer, write, 16, void (*)(void*, mp_str));

static_assert(std::is_same_v<mp_plugin_entry_fn, const mp_plugin* (*)(const mp_host_api*)>,
              "mp_plugin_entry_fn" MP_MOVED);
#else
constexpr bool kLayoutChecked = false;
#endif

// Types whose layout does not depend on the target.
static_assert(std::is_same_v<mp_status, int32_t>, "mp_status" MP_MOVED);
static_assert(std::is_standard_layout_v<mp_plugin> && std::is_trivial_v<mp_plugin>);
static_assert(std::is_standard_layout_v<mp_host_api> && std::is_trivial_v<mp_host_api>);

// ---- constants: part of the ABI as much as the structs --------------------------------------

#define MP_VALUE(name, value) static_assert((name) == (value), #name " changed value: an ABI break")

MP_VALUE(MP_OK, 0);
MP_VALUE(MP_RETRY, 1);
MP_VALUE(MP_ERROR, 2);
MP_VALUE(MP_EINVAL, 3);
MP_VALUE(MP_ENOMEM, 4);
MP_VALUE(MP_ENOENT, 5);
MP_VALUE(MP_EAGAIN, 6);
MP_VALUE(MP_ECLOSED, 7);
MP_VALUE(MP_KIND_CAPTURE, 1);
MP_VALUE(MP_KIND_DECODER, 2);
MP_VALUE(MP_KIND_CLUSTER, 3);
MP_VALUE(MP_KIND_SINK, 4);
MP_VALUE(MP_KIND_SOURCE, 5);  // 1.4
MP_VALUE(MP_LOG_TRACE, 0);
MP_VALUE(MP_LOG_DEBUG, 1);
MP_VALUE(MP_LOG_INFO, 2);
MP_VALUE(MP_LOG_WARN, 3);
MP_VALUE(MP_LOG_ERROR, 4);
MP_VALUE(MP_PROP_BOOL, 1);
MP_VALUE(MP_PROP_INT, 2);
MP_VALUE(MP_PROP_DOUBLE, 3);
MP_VALUE(MP_PROP_STRING, 4);
MP_VALUE(MP_PROP_STRING_LIST, 5);
MP_VALUE(MP_PROP_JSON, 6);      // 1.5
MP_VALUE(MP_WS_SSE, 1);         // 1.5
MP_VALUE(MP_WS_SSE_EVENTS, 2);  // 1.6
MP_VALUE(MP_PROP_REQUIRED, 1u);
MP_VALUE(MP_PROP_SECRET, 2u);
MP_VALUE(MP_EVENT_REPORT, 1);
MP_VALUE(MP_EVENT_INPUT_END, 2);
MP_VALUE(MP_EVENT_PARTIAL, 3);
MP_VALUE(MP_EVENT_ROLE, 5);  // 1.4
MP_VALUE(MP_LINK_NULL, 0);
MP_VALUE(MP_LINK_ETHERNET, 1);
MP_VALUE(MP_LINK_RAW, 101);
MP_VALUE(MP_LINK_LINUX_SLL, 113);
MP_VALUE(MP_LINK_LINUX_SLL2, 276);
MP_VALUE(MP_DIR_TO_SERVER, 0);
MP_VALUE(MP_DIR_TO_CLIENT, 1);
MP_VALUE(MP_FLOW_MIDSTREAM, 1u);
MP_VALUE(MP_CLOSE_FIN, 1);
MP_VALUE(MP_CLOSE_RST, 2);
MP_VALUE(MP_CLOSE_IDLE, 3);
MP_VALUE(MP_CLOSE_EVICTED, 4);
MP_VALUE(MP_CLOSE_SHUTDOWN, 5);
MP_VALUE(MP_WS_TEXT, 1);
MP_VALUE(MP_WS_BINARY, 2);
MP_VALUE(MP_COUNTER, 1);
MP_VALUE(MP_GAUGE, 2);
MP_VALUE(MP_FLAG_CONCURRENT_EVENTS, 1u);
MP_VALUE(MP_EPERM, 8);
MP_VALUE(MP_ROLE_DEFAULT, 0);  // 1.2
MP_VALUE(MP_ROLE_ANYONE, 1);
MP_VALUE(MP_ROLE_READ, 2);
MP_VALUE(MP_ROLE_PEER, 3);
MP_VALUE(MP_ROLE_ADMIN, 4);
MP_VALUE(MP_HTTP_GET, 1u);
MP_VALUE(MP_HTTP_POST, 2u);
MP_VALUE(MP_HTTP_PUT, 4u);
MP_VALUE(MP_HTTP_DELETE, 8u);
// The standard capture counter names (1.3) are part of what a capture plugin is built against.
static_assert(std::string_view(MP_CAPTURE_KERNEL_DROPPED) == "kernel_dropped");
static_assert(std::string_view(MP_CAPTURE_INTERFACE_DROPPED) == "interface_dropped");
static_assert(std::string_view(MP_CAPTURE_TRUNCATED) == "truncated_total");
MP_VALUE(MP_ABI_MAJOR, 1);  // a new major is a new entry symbol and a new set of fixtures

// The entry symbol carries the major.
constexpr bool sameText(const char* a, const char* b) {
    while (*a != '\0' && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}
static_assert(sameText(MP_ENTRY_SYMBOL, "mp_plugin_entry_v1"), "MP_ENTRY_SYMBOL changed");

// ---- SHA-256 (FIPS 180-4), small and self-contained -------------------------------------------

class Sha256 {
  public:
    static std::string hex(const std::string& data) {
        Sha256 h;
        h.update(reinterpret_cast<const uint8_t*>(data.data()), data.size());
        return h.finish();
    }

  private:
    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

    void update(const uint8_t* p, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            block_[used_++] = p[i];
            if (used_ == 64) {
                compress();
                used_ = 0;
            }
        }
        bits_ += static_cast<uint64_t>(n) * 8;
    }

    std::string finish() {
        uint64_t bits = bits_;
        uint8_t pad = 0x80;
        update(&pad, 1);
        uint8_t zero = 0;
        while (used_ != 56) {
            update(&zero, 1);
        }
        for (int i = 7; i >= 0; --i) {
            block_[used_++] = static_cast<uint8_t>(bits >> (i * 8));
        }
        compress();
        static const char kDigits[] = "0123456789abcdef";
        std::string out;
        for (uint32_t word : h_) {
            for (int i = 28; i >= 0; i -= 4) {
                out += kDigits[(word >> i) & 0xf];
            }
        }
        return out;
    }

    void compress() {
        static constexpr std::array<uint32_t, 64> kK = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
            0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
            0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
            0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
            0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
            0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
            0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
            0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
            0xc67178f2};
        std::array<uint32_t, 64> w{};
        for (int i = 0; i < 16; ++i) {
            w[i] = static_cast<uint32_t>(block_[i * 4]) << 24 |
                   static_cast<uint32_t>(block_[i * 4 + 1]) << 16 |
                   static_cast<uint32_t>(block_[i * 4 + 2]) << 8 | block_[i * 4 + 3];
        }
        for (int i = 16; i < 64; ++i) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
        uint32_t e = h_[4], f = h_[5], g = h_[6], h = h_[7];
        for (int i = 0; i < 64; ++i) {
            uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = h + s1 + ch + kK[i] + w[i];
            uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = s0 + maj;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h_[0] += a;
        h_[1] += b;
        h_[2] += c;
        h_[3] += d;
        h_[4] += e;
        h_[5] += f;
        h_[6] += g;
        h_[7] += h;
    }

    std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<uint8_t, 64> block_{};
    size_t used_ = 0;
    uint64_t bits_ = 0;
};

}  // namespace

TEST_CASE("abi.h struct layout is frozen") {
    if (!kLayoutChecked) {
        MESSAGE("struct layout is only checked on x86_64 (LP64)");
        return;
    }
    // The static_asserts above already hold, or this would not have compiled; the sizes here
    // put the frozen values into the test report.
    CHECK(sizeof(mp_str) == 16);
    CHECK(sizeof(mp_bytes) == 16);
    CHECK(sizeof(mp_property) == 56);
    CHECK(sizeof(mp_event) == 56);
    CHECK(sizeof(mp_frame) == 40);
    CHECK(sizeof(mp_flow) == 64);
    CHECK(sizeof(mp_http_request) == 120);
    CHECK(sizeof(mp_ws_handler) == 72);
    CHECK(sizeof(mp_host_api) == 248);
    CHECK(sizeof(mp_plugin) == 160);
    CHECK(sizeof(mp_writer) == 24);
    CHECK(sizeof(mp_record) == 120);
    CHECK(offsetof(mp_plugin, on_delivered) + sizeof(void*) == sizeof(mp_plugin));
}

TEST_CASE("the SHA-256 used for abi.h is correct") {
    CHECK(Sha256::hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Sha256::hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(Sha256::hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(Sha256::hex(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("abi.h matches the hash and version recorded in tests/abi/abi.h.sha256") {
    const std::string header = mptest::sourceDir() + "/sdk/include/mp/abi.h";
    const std::string record = mptest::sourceDir() + "/tests/abi/abi.h.sha256";
    std::string text = mptest::readFile(header);
    REQUIRE_MESSAGE(!text.empty(), "cannot read ", header);
    std::string recorded = mptest::readFile(record);
    REQUIRE_MESSAGE(!recorded.empty(), "cannot read ", record);

    std::istringstream in(recorded);
    std::string recordedHash;
    std::string recordedVersion;
    in >> recordedHash >> recordedVersion;
    std::string actualHash = Sha256::hex(text);
    std::string actualVersion = std::to_string(MP_ABI_MAJOR) + "." + std::to_string(MP_ABI_MINOR);

    const std::string advice =
        "abi.h changed: bump MP_ABI_MINOR (append-only) or MAJOR, record the new hash in "
        "tests/abi/abi.h.sha256 and note it in docs/plugin-abi.md";
    INFO("recorded: ", recordedHash, "  ", recordedVersion);
    INFO("now:      ", actualHash, "  ", actualVersion);
    CHECK_MESSAGE(actualHash == recordedHash, advice);
    CHECK_MESSAGE(actualVersion == recordedVersion, advice);
}
