// SPDX-License-Identifier: Apache-2.0
// The fixtures are what they claim to be: opened with dlopen() (no host code involved), each
// has exactly the defect its name says. Without this, a refusal test could pass for a reason
// other than the one it is about.
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "abi_support.hpp"

using namespace abitest;

namespace {

/// A dlopen()ed fixture; closed at the end of the test.
class Lib {
  public:
    explicit Lib(const std::string& fixture)
        : handle_(::dlopen(fixtureLib(fixture).c_str(), RTLD_NOW | RTLD_LOCAL)) {
        if (handle_ == nullptr) {
            const char* e = ::dlerror();
            error_ = e != nullptr ? e : "?";
        }
    }
    Lib(const Lib&) = delete;
    Lib& operator=(const Lib&) = delete;
    ~Lib() {
        if (handle_ != nullptr) {
            ::dlclose(handle_);
        }
    }

    bool loaded() const { return handle_ != nullptr; }
    const std::string& error() const { return error_; }
    void* sym(const char* name) const { return handle_ ? ::dlsym(handle_, name) : nullptr; }
    mp_plugin_entry_fn entry(const char* name = MP_ENTRY_SYMBOL) const {
        return reinterpret_cast<mp_plugin_entry_fn>(sym(name));
    }
    /// The v1 descriptor (the entry function must exist).
    const mp_plugin* descriptor(const mp_host_api* api) const {
        mp_plugin_entry_fn fn = entry();
        REQUIRE((fn != nullptr));
        return fn(api);
    }

  private:
    void* handle_;
    std::string error_;
};

// A minimal services table: enough for create() of the fixtures, recording what they report.
std::string gLastError;
std::string gLastLog;
int gSetErrorCalls = 0;

mp_host_api fakeApi() {
    mp_host_api api{};
    api.struct_size = sizeof api;
    api.abi_major = MP_ABI_MAJOR;
    api.abi_minor = MP_ABI_MINOR;
    api.log = [](mp_host*, int, mp_str msg) { gLastLog.assign(msg.data, msg.len); };
    api.set_error = [](mp_host*, mp_status, mp_str msg) {
        ++gSetErrorCalls;
        gLastError.assign(msg.data, msg.len);
    };
    api.config_get_str = [](const mp_config*, const char* key, mp_str* out) -> mp_status {
        if (std::strcmp(key, "greeting") != 0) {
            return MP_ENOENT;
        }
        *out = mp_str{"hi", 2};
        return MP_OK;
    };
    gLastError.clear();
    gLastLog.clear();
    gSetErrorCalls = 0;
    return api;
}

/// The descriptor is a well-formed ABI 1 sink apart from whatever the test checks next.
void checkOrdinary(const mp_plugin* d) {
    REQUIRE(d != nullptr);
    CHECK(d->struct_size == sizeof(mp_plugin));
    CHECK(d->abi_major == MP_ABI_MAJOR);
    CHECK(d->abi_minor == MP_ABI_MINOR);
    CHECK(d->version != nullptr);
    CHECK((d->destroy != nullptr));
}

/// The mp_plugin_entry_v<major> symbols a library exports, as "v0 v2 ...".
std::string entrySymbols(const Lib& lib) {
    std::string found;
    for (int major = 0; major < 10; ++major) {
        std::string name = "mp_plugin_entry_v" + std::to_string(major);
        if (lib.sym(name.c_str()) != nullptr) {
            found += (found.empty() ? "v" : " v") + std::to_string(major);
        }
    }
    return found;
}

}  // namespace

TEST_SUITE("fixtures are what they say") {
    TEST_CASE("each fixture directory holds only its library") {
        for (const char* f :
             {"not_a_plugin",       "hidden_entry",         "garbage_file",
              "wrong_major_symbol", "wrong_major_field",    "newer_minor",
              "small_struct_size",  "null_descriptor",      "no_create",
              "bad_name",           "bad_property_default", "duplicate_property",
              "duplicate_name",     "throws_in_entry",      "decoder_without_stream_hooks",
              "unknown_kind",       "create_fails",         "silent_create_fail",
              "null_instance",      "throws_in_create",     "sdk_throws_in_create",
              "good_sink",          "refusing_sink",        "role_sink"}) {
            INFO("fixture: ", f);
            std::string content = mptest::readFile(fixtureLib(f));
            CHECK(!content.empty());
            bool elf = content.rfind("\177ELF", 0) == 0;
            CHECK(elf == (std::string(f) != "garbage_file"));
        }
    }

    TEST_CASE("garbage_file is not loadable") {
        Lib lib("garbage_file");
        CHECK(!lib.loaded());
        CHECK(!lib.error().empty());
    }

    TEST_CASE("not_a_plugin and hidden_entry load but export no entry") {
        Lib notPlugin("not_a_plugin");
        REQUIRE(notPlugin.loaded());
        CHECK(notPlugin.sym("mp_fixture_not_a_plugin") != nullptr);
        CHECK(entrySymbols(notPlugin).empty());

        Lib hidden("hidden_entry");
        REQUIRE(hidden.loaded());
        CHECK(entrySymbols(hidden).empty());
    }

    TEST_CASE("wrong_major_symbol exports v2 only") {
        Lib lib("wrong_major_symbol");
        REQUIRE(lib.loaded());
        CHECK(entrySymbols(lib) == "v2");
        mp_host_api api = fakeApi();
        const mp_plugin* d = lib.entry("mp_plugin_entry_v2")(&api);
        REQUIRE(d != nullptr);
        CHECK(d->abi_major == 2);
    }

    TEST_CASE("version and size defects") {
        mp_host_api api = fakeApi();
        {
            Lib lib("wrong_major_field");
            REQUIRE(lib.loaded());
            CHECK(entrySymbols(lib) == "v1");
            const mp_plugin* d = lib.descriptor(&api);
            REQUIRE(d != nullptr);
            CHECK(d->abi_major == 2);
            CHECK(d->abi_minor == 0);
            CHECK(d->struct_size == sizeof(mp_plugin));
        }
        {
            Lib lib("newer_minor");
            const mp_plugin* d = lib.descriptor(&api);
            REQUIRE(d != nullptr);
            CHECK(d->abi_major == MP_ABI_MAJOR);
            CHECK(d->abi_minor == MP_ABI_MINOR + 1);
        }
        {
            Lib lib("small_struct_size");
            const mp_plugin* d = lib.descriptor(&api);
            REQUIRE(d != nullptr);
            CHECK(d->struct_size == 8);
            CHECK(d->abi_major == MP_ABI_MAJOR);
        }
        {
            Lib lib("null_descriptor");
            CHECK(lib.descriptor(&api) == nullptr);
        }
    }

    TEST_CASE("throws_in_entry throws from its entry function") {
        Lib lib("throws_in_entry");
        mp_plugin_entry_fn fn = lib.entry();
        REQUIRE((fn != nullptr));
        mp_host_api api = fakeApi();
        std::string what;
        try {
            (void)fn(&api);
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "boom in entry");
    }

    TEST_CASE("descriptor content defects") {
        mp_host_api api = fakeApi();
        {
            Lib lib("no_create");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK((d->create == nullptr));
        }
        {
            Lib lib("bad_name");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK(std::string(d->name) == "Bad_Name");
        }
        {
            Lib lib("bad_property_default");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            REQUIRE(d->properties != nullptr);
            CHECK(d->properties[0].type == MP_PROP_INT);
            CHECK(std::string(d->properties[0].default_value) == "abc");
            CHECK(d->properties[1].name == nullptr);
        }
        {
            Lib lib("duplicate_property");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            REQUIRE(d->properties != nullptr);
            CHECK(std::string(d->properties[0].name) == d->properties[1].name);
        }
        {
            Lib lib("duplicate_name");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK(d->kind == MP_KIND_SINK);
            CHECK((d->create != nullptr));
            CHECK(std::string(d->name) == "capture-pcap");
        }
        {
            Lib lib("decoder_without_stream_hooks");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK(d->kind == MP_KIND_DECODER);
            CHECK((d->create != nullptr));
            CHECK((d->stream_open == nullptr));
            CHECK((d->stream_data == nullptr));
            CHECK((d->stream_gap == nullptr));
            CHECK((d->stream_close == nullptr));
        }
        {
            Lib lib("unknown_kind");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK(d->kind == 9);
        }
    }

    TEST_CASE("create() defects") {
        mp_host_api api = fakeApi();
        void* instance = nullptr;
        {
            Lib lib("create_fails");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            CHECK(d->create(nullptr, &api, nullptr, &instance) == MP_ERROR);
            CHECK(gLastError == "disk on fire");
        }
        {
            Lib lib("silent_create_fail");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            gSetErrorCalls = 0;
            CHECK(d->create(nullptr, &api, nullptr, &instance) == MP_ENOMEM);
            CHECK(gSetErrorCalls == 0);
        }
        {
            Lib lib("null_instance");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            instance = &api;
            CHECK(d->create(nullptr, &api, nullptr, &instance) == MP_OK);
            CHECK(instance == nullptr);
        }
        {
            Lib lib("throws_in_create");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            std::string what;
            try {
                (void)d->create(nullptr, &api, nullptr, &instance);
            } catch (const std::runtime_error& e) {
                what = e.what();
            }
            CHECK(what == "boom in create");
        }
        {
            Lib lib("sdk_throws_in_create");
            const mp_plugin* d = lib.descriptor(&api);
            checkOrdinary(d);
            mp_status st = MP_OK;
            CHECK_NOTHROW(st = d->create(nullptr, &api, nullptr, &instance));
            CHECK(st == MP_ERROR);
            CHECK(gLastError == "sdk boom");
        }
    }

    TEST_CASE("good_sink is a correct sink") {
        Lib lib("good_sink");
        REQUIRE(lib.loaded());
        CHECK(entrySymbols(lib) == "v1");
        mp_host_api api = fakeApi();
        const mp_plugin* d = lib.descriptor(&api);
        checkOrdinary(d);
        CHECK(d->kind == MP_KIND_SINK);
        CHECK(std::string(d->name) == "abi-good-sink");
        REQUIRE(d->properties != nullptr);
        CHECK(std::string(d->properties[0].name) == "greeting");
        CHECK(d->properties[1].name == nullptr);
        void* instance = nullptr;
        REQUIRE(d->create(nullptr, &api, nullptr, &instance) == MP_OK);
        CHECK(instance != nullptr);
        CHECK(gLastLog == "abi-good-sink says 'hi'");
        d->destroy(instance);
    }
}
