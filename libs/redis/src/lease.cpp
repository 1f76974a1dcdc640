// SPDX-License-Identifier: Apache-2.0
// The lease (semantics in mp/redis.hpp): SET NX PX to take it, Lua scripts to renew and release
// it only while it is still ours. A script runs atomically in Redis: nothing happens between
// its GET and its PEXPIRE or DEL.
#include <mp/redis.hpp>

namespace mp::redis {
namespace {

// KEYS[1]: the key; ARGV[1]: our owner string; ARGV[2]: the ttl in ms. 1 when ours (and
// extended), 0 otherwise.
constexpr const char* kRenew =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
// KEYS[1]: the key; ARGV[1]: our owner string. 1 when it was ours (and is deleted).
constexpr const char* kRelease =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end";

}  // namespace

Lease::Lease(Client& client, std::string key, std::string owner, int64_t ttlMs)
    : client_(client), key_(std::move(key)), owner_(std::move(owner)), ttlMs_(ttlMs) {
    if (key_.empty() || owner_.empty() || ttlMs_ <= 0) {
        throw std::invalid_argument("redis lease: a key, an owner and a ttl > 0 are needed");
    }
    ttl_ = std::to_string(ttlMs_);
}

bool Lease::acquireOrRenew() {
    // Counted from before the request: Redis sets the expiry later than this, never earlier.
    const auto sent = std::chrono::steady_clock::now();
    const auto check = [this](const Reply& r, const char* what) {
        if (r.isError()) {
            throw std::runtime_error("redis lease " + key_ + ": " + what + ": " +
                                     r.str.substr(0, 256));
        }
    };
    const auto renew = [&] {
        const Reply r = client_.command({"EVAL", kRenew, "1", key_, owner_, ttl_});
        check(r, "renew");
        return r.type == Reply::Type::Integer && r.integer == 1;
    };
    const auto take = [&] {
        const Reply r = client_.command({"SET", key_, owner_, "NX", "PX", ttl_});
        check(r, "acquire");
        return r.isString("OK");
    };
    // The likely case first: a holder renews, another monitor tries to take it. Either way the
    // other request follows when the first fails (the key expired in between, or it is ours
    // though the last answer said otherwise: a reply lost to a timeout).
    until_ = {};
    bool ok = mine_ ? renew() || take() : take() || renew();
    mine_ = ok;
    if (ok) {
        until_ = sent + std::chrono::milliseconds(ttlMs_);
    }
    return ok;
}

void Lease::release() {
    mine_ = false;
    until_ = {};
    const Reply r = client_.command({"EVAL", kRelease, "1", key_, owner_});
    if (r.isError()) {
        throw std::runtime_error("redis lease " + key_ + ": release: " + r.str.substr(0, 256));
    }
}

std::optional<std::string> Lease::holder() {
    Reply r = client_.command({"GET", key_});
    if (r.isError()) {
        throw std::runtime_error("redis lease " + key_ + ": GET: " + r.str.substr(0, 256));
    }
    if (r.type == Reply::Type::Bulk) {
        return std::move(r.str);
    }
    return std::nullopt;
}

bool Lease::held() const { return mine_ && std::chrono::steady_clock::now() < until_; }

}  // namespace mp::redis
