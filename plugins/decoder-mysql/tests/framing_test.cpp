// SPDX-License-Identifier: Apache-2.0
// Framing bounds: compressed frames are inflated as their bytes arrive (never held whole), a
// large packet's buffer is released once it is complete, and a frame that cannot be right is
// given up (counted) at once instead of being buffered to its claimed length.
#include "framing.hpp"

#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

using mp::mysql::Framer;
using mp::mysql::Packet;

namespace {

void le24(std::vector<uint8_t>& v, size_t n) {
    v.push_back(static_cast<uint8_t>(n));
    v.push_back(static_cast<uint8_t>(n >> 8));
    v.push_back(static_cast<uint8_t>(n >> 16));
}

// Plain MySQL packets of the given payload sizes; payload bytes vary so zlib has work to do.
std::vector<uint8_t> packets(const std::vector<size_t>& sizes) {
    std::vector<uint8_t> out;
    uint32_t x = 12345;
    uint8_t seq = 0;
    for (size_t n : sizes) {
        le24(out, n);
        out.push_back(seq++);
        for (size_t i = 0; i < n; ++i) {
            x = x * 1103515245 + 12345;
            out.push_back(static_cast<uint8_t>('a' + ((x >> 16) % 8)));
        }
    }
    return out;
}

// One compressed-protocol frame of `plain` (zlib), with the lengths its header claims.
std::vector<uint8_t> zframe(const std::vector<uint8_t>& plain, long claimUlen = -1) {
    uLongf clen = compressBound(plain.size());
    std::vector<uint8_t> body(clen);
    REQUIRE(compress(body.data(), &clen, plain.data(), plain.size()) == Z_OK);
    body.resize(clen);
    std::vector<uint8_t> f;
    le24(f, body.size());
    f.push_back(0);
    le24(f, claimUlen < 0 ? plain.size() : static_cast<size_t>(claimUlen));
    f.insert(f.end(), body.begin(), body.end());
    return f;
}

struct Fed {
    std::vector<uint64_t> lengths;
    size_t peakHeld = 0;
    bool ok = true;
};

// Feeds `bytes` in segments of `mss`, recording packet lengths and the framer's peak memory.
Fed feed(Framer& f, const std::vector<uint8_t>& bytes, size_t mss) {
    Fed r;
    for (size_t pos = 0; pos < bytes.size() && r.ok; pos += mss) {
        size_t n = std::min(mss, bytes.size() - pos);
        r.ok = f.feed(bytes.data() + pos, n, 0, [&](const Packet& p) {
            r.lengths.push_back(p.length);
            r.peakHeld = std::max(r.peakHeld, f.heldBytes());
        });
        r.peakHeld = std::max(r.peakHeld, f.heldBytes());
    }
    return r;
}

}  // namespace

TEST_SUITE("decoder-mysql") {
    TEST_CASE("framing: a compressed frame is inflated as it arrives, never held whole") {
        // 12 MiB of packets in one frame (the protocol allows up to 16 MiB): before, the
        // framer held the compressed frame and its whole inflated copy, per direction.
        std::vector<size_t> sizes(300, 40000);
        sizes.push_back(1);
        const auto plain = packets(sizes);
        REQUIRE(plain.size() < 0xffffff);
        const auto frame = zframe(plain);
        Framer f;
        f.setCompressed(true);
        const Fed r = feed(f, frame, 1448);
        CHECK(r.ok);
        CHECK(f.decompressErrors() == 0);
        REQUIRE(r.lengths.size() == sizes.size());
        CHECK(std::equal(r.lengths.begin(), r.lengths.end(), sizes.begin()));
        // The bound: the kept prefix of a packet (here < 64 KiB) and one inflater.
        CHECK(r.peakHeld <= Framer::kKeepRetained + Framer::kInflaterBytes);
        CHECK(r.peakHeld < plain.size() / 100);
        // Between frames only a small kept buffer remains, the inflater is gone.
        CHECK(f.heldBytes() <= Framer::kKeepRetained);
    }

    TEST_CASE("framing: stored frames pass through; many frames do not accumulate") {
        Framer f;
        f.setCompressed(true);
        std::vector<uint8_t> stream;
        for (int i = 0; i < 200; ++i) {
            const auto plain = packets({100, 3000});
            // Alternate stored (uncompressed length 0) and zlib frames.
            if (i % 2 == 0) {
                std::vector<uint8_t> fr;
                le24(fr, plain.size());
                fr.push_back(static_cast<uint8_t>(i));
                le24(fr, 0);
                fr.insert(fr.end(), plain.begin(), plain.end());
                stream.insert(stream.end(), fr.begin(), fr.end());
            } else {
                const auto fr = zframe(plain);
                stream.insert(stream.end(), fr.begin(), fr.end());
            }
        }
        for (size_t mss : {size_t{1}, size_t{7}, size_t{1448}, stream.size()}) {
            CAPTURE(mss);
            Framer g;
            g.setCompressed(true);
            const Fed r = feed(g, stream, mss);
            CHECK(r.ok);
            CHECK(r.lengths.size() == 400);
            CHECK(g.decompressErrors() == 0);
            CHECK(r.peakHeld <= Framer::kKeepRetained + Framer::kInflaterBytes);
            CHECK(g.heldBytes() <= Framer::kKeepRetained);
        }
    }

    TEST_CASE("framing: a large packet's buffer is released once it is complete") {
        Framer f;  // plain
        const auto big = packets({900000, 10});
        const Fed r = feed(f, big, 1448);
        CHECK(r.ok);
        REQUIRE(r.lengths.size() == 2);
        CHECK(r.lengths[0] == 900000);
        CHECK(r.peakHeld >= 900000);  // the kept prefix (up to 1 MiB) while it lasts
        CHECK(r.peakHeld <= 900000);  // exactly what is kept: no growth by doubling
        CHECK(f.heldBytes() <= Framer::kKeepRetained);
    }

    TEST_CASE("framing: frames that cannot be right are given up at once and counted") {
        SUBCASE("garbage claiming a 16 MiB frame: refused at its first bytes, nothing kept") {
            std::vector<uint8_t> fr = {0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff};
            fr.resize(fr.size() + 4000, 0x5a);  // not a zlib stream
            Framer f;
            f.setCompressed(true);
            const Fed r = feed(f, fr, 1448);
            CHECK_FALSE(r.ok);
            CHECK(f.decompressErrors() == 1);
            CHECK(f.heldBytes() == 0);
            CHECK(r.peakHeld <= Framer::kInflaterBytes);
        }
        SUBCASE("a frame that inflates past its claimed length") {
            const auto fr = zframe(packets({5000}), 100);
            Framer f;
            f.setCompressed(true);
            CHECK_FALSE(feed(f, fr, 1448).ok);
            CHECK(f.decompressErrors() == 1);
            CHECK(f.heldBytes() == 0);
        }
        SUBCASE("a frame that inflates to less than its claimed length") {
            const auto fr = zframe(packets({5000}), 9000);
            Framer f;
            f.setCompressed(true);
            CHECK_FALSE(feed(f, fr, 1448).ok);
            CHECK(f.decompressErrors() == 1);
            CHECK(f.heldBytes() == 0);
        }
        SUBCASE("a gap inside a frame: reset releases the inflater") {
            const auto fr = zframe(packets(std::vector<size_t>(50, 4000)));
            Framer f;
            f.setCompressed(true);
            CHECK(f.feed(fr.data(), fr.size() / 2, 0, [](const Packet&) {}));
            CHECK(f.heldBytes() >= Framer::kInflaterBytes);
            f.reset();
            CHECK(f.heldBytes() == 0);
            CHECK(f.decompressErrors() == 0);
        }
    }
}
