// SPDX-License-Identifier: Apache-2.0
// Load-time refusals: `mysqlprobe --list-plugins --plugin-dir <one fixture>` must exit 2 with one
// line on stderr that names the file and says precisely what is wrong with it.
#include <doctest/doctest.h>

#include <string>

#include "abi_support.hpp"

using namespace abitest;

namespace {

const std::string kAbi = std::to_string(MP_ABI_MAJOR) + "." + std::to_string(MP_ABI_MINOR);

/// Runs the host on the fixture and returns its one stderr line after checking the common
/// shape: exit status 2, nothing listed on stdout, "mysqlprobe: refusing plugin <file>: ".
std::string refusal(const std::string& fixture) {
    Result r = listFixture(fixture);
    INFO("fixture: ", fixture);
    INFO("stdout: ", r.out);
    INFO("stderr: ", r.err);
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    auto errLines = lines(r.err);
    CHECK(errLines.size() == 1);
    std::string line = errLines.empty() ? std::string() : errLines.front();
    std::string prefix = "mysqlprobe: refusing plugin " + fixtureLib(fixture) + ": ";
    CHECK_MESSAGE(startsWith(line, prefix), "expected prefix: ", prefix);
    return startsWith(line, prefix) ? line.substr(prefix.size()) : line;
}

}  // namespace

TEST_CASE("the control fixture good_sink is listed from its own --plugin-dir") {
    Result r = listFixture("good_sink");
    INFO("stderr: ", r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    // Listed after the built-in plugins, with its kind, version, ABI, path and property.
    CHECK(contains(
        r.out, "abi-good-sink  sink  1.2.3  ABI " + kAbi + "  " + fixtureLib("good_sink") + "\n"));
    CHECK(contains(r.out, "    ABI fixture: a correct sink\n"));
    CHECK(contains(r.out, "greeting"));
    CHECK(contains(r.out, "default \"hello\""));
    CHECK(contains(r.out, "sink-websocket  sink  "));
}

TEST_CASE("garbage_file: a text file named like a plugin is not a loadable library") {
    CHECK(refusal("garbage_file") == "not a loadable shared library (not an ELF file)");
}

TEST_CASE("not_a_plugin: a shared library without the entry symbol") {
    CHECK(refusal("not_a_plugin") ==
          "not a mysqlprobe plugin (no exported mp_plugin_entry_v1 symbol; plugins export it "
          "with MP_EXPORT)");
}

TEST_CASE("hidden_entry: an entry function that is not exported is not found") {
    CHECK(refusal("hidden_entry") ==
          "not a mysqlprobe plugin (no exported mp_plugin_entry_v1 symbol; plugins export it "
          "with MP_EXPORT)");
}

TEST_CASE("wrong_major_symbol: only mp_plugin_entry_v2 is exported") {
    CHECK(refusal("wrong_major_symbol") ==
          "built for plugin ABI 2.x, this host speaks ABI " + kAbi);
}

TEST_CASE("wrong_major_field: v1 symbol, descriptor says ABI 2.0") {
    CHECK(refusal("wrong_major_field") == "built for plugin ABI 2.0, this host speaks ABI " + kAbi);
}

TEST_CASE("newer_minor: built for a newer minor than the host's") {
    std::string plugin = std::to_string(MP_ABI_MAJOR) + "." + std::to_string(MP_ABI_MINOR + 1);
    CHECK(refusal("newer_minor") == "built for plugin ABI " + plugin +
                                        ", newer than this host's ABI " + kAbi +
                                        " (upgrade mysqlprobe)");
}

TEST_CASE("small_struct_size: a descriptor of 8 bytes") {
    std::string need = std::to_string(offsetof(mp_plugin, stream_close) + sizeof(void*));
    CHECK(refusal("small_struct_size") ==
          "descriptor is 8 bytes, ABI " + kAbi + " needs at least " + need);
}

TEST_CASE("null_descriptor: the entry function returns NULL") {
    CHECK(refusal("null_descriptor") == "the entry function returned no descriptor");
}

TEST_CASE("throws_in_entry: an exception escapes the entry function") {
    CHECK(refusal("throws_in_entry") == "the entry function threw: boom in entry");
}

TEST_CASE("unknown_kind: kind 9") { CHECK(refusal("unknown_kind") == "unknown plugin kind 9"); }

TEST_CASE("bad_name: a name that is not kebab-case") {
    CHECK(refusal("bad_name") ==
          "invalid plugin name 'Bad_Name' (expected kebab-case [a-z0-9-], at most 64 characters)");
}

TEST_CASE("no_create: create() is NULL") {
    CHECK(refusal("no_create") == "plugin 'abi-no-create' lacks create()");
}

TEST_CASE("decoder_without_stream_hooks: a decoder with stream_* NULL") {
    CHECK(refusal("decoder_without_stream_hooks") ==
          "decoder 'abi-decoder-without-stream-hooks' lacks a stream_* hook");
}

TEST_CASE("bad_property_default: an INT property whose default is \"abc\"") {
    CHECK(refusal("bad_property_default") ==
          "plugin 'abi-bad-property-default': default of 'count': expected an integer, got 'abc'");
}

TEST_CASE("duplicate_property: a property declared twice") {
    CHECK(refusal("duplicate_property") ==
          "plugin 'abi-duplicate-property': property 'path' is declared twice");
}

TEST_CASE("duplicate_name: a sink named like the built-in capture-pcap") {
    // The first one loaded (the built-in) stays; the message names both files. The built-in's
    // path is the host's view of its own directory, which may differ by symlinks from ours.
    std::string why = refusal("duplicate_name");
    std::string head = "duplicate plugin name 'capture-pcap', already loaded from ";
    std::string tail = "/libmp-capture-pcap.so";
    CHECK(startsWith(why, head));
    CHECK(why.size() > head.size() + tail.size());
    CHECK(why.compare(why.size() - tail.size(), tail.size(), tail) == 0);
    WARN_MESSAGE(why == head + builtinDir() + tail, "built-in plugin dir: ", builtinDir());
}

TEST_CASE("a refused plugin is refused by --check -c as well") {
    // The same check guards the configuration path, not only --list-plugins.
    std::string cfg = sinkConfig("unknown_kind", "abi-unknown-kind");
    Result r = runHost({"--check", "-c", cfg});
    INFO("stderr: ", r.err);
    CHECK(r.code == 2);
    CHECK(r.err == "mysqlprobe: refusing plugin " + fixtureLib("unknown_kind") +
                       ": unknown plugin kind 9\n");
}
