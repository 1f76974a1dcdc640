// SPDX-License-Identifier: Apache-2.0
#include "app/decoder_streams.hpp"

#include "plugin/dispatch.hpp"

namespace mp::host {

namespace {
// The stream of a connection the decoder refused (stream_open failed): its bytes go nowhere.
char gRefused = 0;
}  // namespace

DecoderStreams::DecoderStreams(Instance& inst)
    : inst_(inst), d_(inst.plugin->desc), self_(inst.self) {}

void* DecoderStreams::open(const mp_flow& flow) {
    void* s = nullptr;
    mp_status st = MP_ERROR;
    dispatch::guarded(inst_, "stream_open", [&] { st = d_.stream_open(self_, &flow, &s); });
    return st == MP_OK ? s : &gRefused;
}

void DecoderStreams::data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) {
    if (s != &gRefused) {
        dispatch::guarded(inst_, "stream_data", [&] {
            d_.stream_data(self_, s, dir, mp_bytes{p, n}, ts);
        });
    }
}

void DecoderStreams::gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) {
    if (s != &gRefused) {
        dispatch::guarded(inst_, "stream_gap", [&] { d_.stream_gap(self_, s, dir, len, ts); });
    }
}

void DecoderStreams::close(void* s, uint32_t reason, uint64_t ts) {
    if (s != &gRefused) {
        dispatch::guarded(inst_, "stream_close", [&] { d_.stream_close(self_, s, reason, ts); });
    }
}

void DecoderStreams::tick(uint64_t ts) {
    if (d_.on_tick != nullptr) {
        dispatch::guarded(inst_, "on_tick", [&] { d_.on_tick(self_, ts); });
    }
}

FanoutStreams::FanoutStreams(std::vector<std::unique_ptr<DecoderStreams>> decoders)
    : d_(std::move(decoders)) {}

// A stream's state is one state per decoder, allocated at open and freed at close.
void* FanoutStreams::open(const mp_flow& flow) {
    auto* states = new void*[d_.size()];
    for (size_t i = 0; i < d_.size(); ++i) {
        states[i] = d_[i]->open(flow);
    }
    return states;
}

void FanoutStreams::data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) {
    auto** states = static_cast<void**>(s);
    for (size_t i = 0; i < d_.size(); ++i) {
        d_[i]->data(states[i], dir, p, n, ts);
    }
}

void FanoutStreams::gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) {
    auto** states = static_cast<void**>(s);
    for (size_t i = 0; i < d_.size(); ++i) {
        d_[i]->gap(states[i], dir, len, ts);
    }
}

void FanoutStreams::close(void* s, uint32_t reason, uint64_t ts) {
    auto** states = static_cast<void**>(s);
    for (size_t i = 0; i < d_.size(); ++i) {
        d_[i]->close(states[i], reason, ts);
    }
    delete[] states;
}

void FanoutStreams::tick(uint64_t ts) {
    for (auto& d : d_) {
        d->tick(ts);
    }
}

}  // namespace mp::host
