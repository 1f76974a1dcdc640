// SPDX-License-Identifier: Apache-2.0
// memberlist's encryption (wire.hpp): AES-GCM with the primary key, any installed key to
// decrypt, UDP and TCP framings, keys given in base64 as serf does.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>

#include "msgpack_io.hpp"

namespace mp::gossip {

using detail::getBe32;
using detail::putBe32;

namespace {

// ------------------------------------------------------------------------------------ crypto

constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;
constexpr size_t kVsnOverhead = 1 + kNonce + kTag;  // 29: version 1
constexpr size_t kMaxCrypt = static_cast<size_t>(INT_MAX) - 64;

const EVP_CIPHER* gcmCipher(size_t keyLen) {
    switch (keyLen) {
        case 16:
            return EVP_aes_128_gcm();
        case 24:
            return EVP_aes_192_gcm();
        case 32:
            return EVP_aes_256_gcm();
        default:
            return nullptr;
    }
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

/// AES-GCM, one pass either way: sealing writes n bytes of ciphertext to `out` and the 16-byte
/// tag to `tag`; opening writes n bytes of plaintext and is false unless `tag` authenticates.
bool gcm(bool seal, const Bytes& key, const uint8_t* nonce, const uint8_t* in, size_t n,
         const uint8_t* aad, size_t aadLen, uint8_t* tag, uint8_t* out) {
    const EVP_CIPHER* cipher = gcmCipher(key.size());
    if (cipher == nullptr || n > kMaxCrypt) {
        return false;
    }
    const int enc = seal ? 1 : 0;
    CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    int len = 0;
    if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonce), nullptr) !=
            1 ||
        EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce, enc) != 1) {
        return false;
    }
    if (aadLen > 0 &&
        EVP_CipherUpdate(ctx.get(), nullptr, &len, aad, static_cast<int>(aadLen)) != 1) {
        return false;
    }
    int total = 0;
    if (n > 0) {
        if (EVP_CipherUpdate(ctx.get(), out, &len, in, static_cast<int>(n)) != 1) {
            return false;
        }
        total = len;
    }
    if (!seal &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag), tag) != 1) {
        return false;
    }
    uint8_t last[16];
    if (EVP_CipherFinal_ex(ctx.get(), n > 0 ? out + total : last, &len) != 1 ||
        static_cast<size_t>(total) + static_cast<size_t>(len) != n) {
        return false;
    }
    return !seal ||
           EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag), tag) == 1;
}

/// memberlist's encryptPayload, version 1: vsn | nonce | ciphertext | tag, appended to `out`.
bool sealPayload(const Bytes& key, const uint8_t* p, size_t n, const uint8_t* aad, size_t aadLen,
                 Bytes& out) {
    if (n > kMaxCrypt) {
        return false;
    }
    size_t at = out.size();
    out.resize(at + kVsnOverhead + n);
    uint8_t* dst = out.data() + at;
    dst[0] = 1;
    if (RAND_bytes(dst + 1, static_cast<int>(kNonce)) != 1 ||
        !gcm(true, key, dst + 1, p, n, aad, aadLen, dst + 1 + kNonce + n, dst + 1 + kNonce)) {
        return false;
    }
    return true;
}

/// memberlist's decryptPayload: versions 0 (PKCS7) and 1, every key tried in order.
bool openPayload(const std::vector<Bytes>& keys, const uint8_t* p, size_t n, const uint8_t* aad,
                 size_t aadLen, Bytes& out) {
    if (p == nullptr || n < 1 || p[0] > 1) {
        return false;
    }
    const bool padded = p[0] == 0;
    if (n < kVsnOverhead + (padded ? 16 : 0) || n - kVsnOverhead > kMaxCrypt) {
        return false;
    }
    const size_t ctLen = n - kVsnOverhead;
    Bytes plain(ctLen);
    uint8_t tag[kTag];  // OpenSSL takes the expected tag as writable
    std::copy(p + n - kTag, p + n, tag);
    for (const Bytes& key : keys) {
        if (!gcm(false, key, p + 1, p + 1 + kNonce, ctLen, aad, aadLen, tag, plain.data())) {
            continue;
        }
        if (padded) {
            uint8_t pad = plain.empty() ? 0 : plain.back();
            if (pad == 0 || pad > 16 || pad > plain.size()) {
                return false;
            }
            plain.resize(plain.size() - pad);
        }
        out = std::move(plain);
        return true;
    }
    return false;
}

/// Standard base64 with padding; CR and LF are skipped (as Go's decoder does). OpenSSL decodes;
/// this only refuses what EVP_DecodeBlock would let through (padding anywhere but at the end).
bool base64Decode(const std::string& in, Bytes& out) {
    std::string s;
    for (char c : in) {
        if (c != '\r' && c != '\n') {
            s.push_back(c);
        }
    }
    if (s.empty() || s.size() % 4 != 0 || s.size() > (1u << 20)) {
        return false;
    }
    size_t pads = s.size() - s.find_last_not_of('=') - 1;
    if (s.find('=') < s.size() - pads || pads > 2) {
        return false;
    }
    Bytes r(s.size() / 4 * 3);
    int n = EVP_DecodeBlock(r.data(), reinterpret_cast<const unsigned char*>(s.data()),
                            static_cast<int>(s.size()));
    if (n < 0 || static_cast<size_t>(n) != r.size()) {
        return false;  // a character outside the alphabet
    }
    r.resize(r.size() - pads);
    out = std::move(r);
    return true;
}

}  // namespace

// ------------------------------------------------------------------------------------ keyring

bool Keyring::add(const Bytes& key) {
    if (gcmCipher(key.size()) == nullptr) {
        return false;
    }
    if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) {
        keys_.push_back(key);
    }
    return true;
}

bool Keyring::use(const Bytes& key) {
    auto it = std::find(keys_.begin(), keys_.end(), key);
    if (it == keys_.end()) {
        return false;
    }
    std::rotate(keys_.begin(), it, it + 1);  // to the front, the others in their order
    return true;
}

bool Keyring::remove(const Bytes& key) {
    auto it = std::find(keys_.begin(), keys_.end(), key);
    if (it == keys_.end() || it == keys_.begin()) {
        return false;
    }
    keys_.erase(it);
    return true;
}

bool Keyring::fromBase64(const std::string& b64, Bytes& key) { return base64Decode(b64, key); }

bool Keyring::addBase64(const std::string& b64) {
    Bytes key;
    return base64Decode(b64, key) && add(key);
}

Bytes Keyring::encryptUdp(const uint8_t* p, size_t n) const {
    Bytes out;
    if (keys_.empty() || (p == nullptr && n > 0) || !sealPayload(keys_[0], p, n, nullptr, 0, out)) {
        return {};
    }
    return out;
}

bool Keyring::decryptUdp(const uint8_t* p, size_t n, Bytes& out) const {
    try {
        return openPayload(keys_, p, n, nullptr, 0, out);
    } catch (...) {
        return false;
    }
}

Bytes Keyring::encryptTcp(const uint8_t* p, size_t n) const {
    if (keys_.empty() || (p == nullptr && n > 0) || n > 0xffffffffu - kVsnOverhead) {
        return {};
    }
    Bytes out(5);
    out[0] = static_cast<uint8_t>(MsgType::Encrypt);
    putBe32(out.data() + 1, static_cast<uint32_t>(kVsnOverhead + n));
    const Bytes header = out;
    if (!sealPayload(keys_[0], p, n, header.data(), header.size(), out)) {
        return {};
    }
    return out;
}

bool Keyring::decryptTcp(const uint8_t* header, const uint8_t* body, size_t n, Bytes& out) const {
    try {
        if (header == nullptr || header[0] != static_cast<uint8_t>(MsgType::Encrypt) ||
            getBe32(header + 1) != n) {
            return false;
        }
        return openPayload(keys_, body, n, header, 5, out);
    } catch (...) {
        return false;
    }
}

}  // namespace mp::gossip
