// SPDX-License-Identifier: Apache-2.0
// The stream layer's side of a decoder: one worker's streams fed to its decoder instance.
#pragma once

#include <memory>
#include <vector>

#include "plugin/instance.hpp"
#include "stream/flow_table.hpp"

namespace mp::host {

/// Feeds one worker's streams to its decoder instance (on the worker's thread), catching what
/// escapes the plugin.
class DecoderStreams : public StreamHandler {
  public:
    explicit DecoderStreams(Instance& inst);

    void* open(const mp_flow& flow) override;
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) override;
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) override;
    void close(void* s, uint32_t reason, uint64_t ts) override;
    void tick(uint64_t ts) override;

  private:
    Instance& inst_;
    const mp_plugin& d_;
    void* self_;
};

/// Several decoders on one worker (`plugins.decoders`): every stream goes to each of them, in
/// slot order; one that refuses a stream does not keep it from the others.
class FanoutStreams : public StreamHandler {
  public:
    explicit FanoutStreams(std::vector<std::unique_ptr<DecoderStreams>> decoders);

    void* open(const mp_flow& flow) override;
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) override;
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) override;
    void close(void* s, uint32_t reason, uint64_t ts) override;
    void tick(uint64_t ts) override;

  private:
    std::vector<std::unique_ptr<DecoderStreams>> d_;
};

/// Without a decoder the streams are only counted by the flow table.
class NullStreams : public StreamHandler {
  public:
    void* open(const mp_flow&) override { return this; }
    void data(void*, uint32_t, const uint8_t*, size_t, uint64_t) override {}
    void gap(void*, uint32_t, uint64_t, uint64_t) override {}
    void close(void*, uint32_t, uint64_t) override {}
    void tick(uint64_t) override {}
};

}  // namespace mp::host
