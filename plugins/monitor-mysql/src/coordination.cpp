// SPDX-License-Identifier: Apache-2.0
#include "coordination.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mp/hostport.hpp>
#include <mp/redis.hpp>
#include <mutex>
#include <thread>

namespace mp::monitor {

namespace {

class Everyone : public Coordination {
  public:
    bool acting() override { return true; }
};

// The cluster plugin says which node is the master (host_get "cluster.role"): a standalone node
// or the master acts, a slave watches.
class ClusterMaster : public Coordination {
  public:
    explicit ClusterMaster(Host host) : host_(host) {}
    bool acting() override {
        auto role = host_.get("cluster.role");
        return !role || *role == "master" || *role == "standalone";
    }

  private:
    Host host_;
};

// A lease in Redis (key mysqlprobe:<tag>:leader, value the owner), renewed every third of its
// time to live by a thread of its own; the holder acts until the lease's end as measured on its
// own clock. Switch decisions are announced the mmm way: the active master per tag in a key
// (mysqlprobe:<tag>:master, the LAIN topology JSON) and a message on the topic.
class RedisLease : public Coordination {
  public:
    RedisLease(const CoordinationOptions& o, std::function<void(int, const std::string&)> log)
        : o_(o), log_(std::move(log)) {
        auto hp = net::parseHostPort(o.redis);
        if (!hp) {
            throw Error("redis: '" + o.redis + "' is not host:port");
        }
        if (o.tag.empty() || o.tag.size() > 128) {
            throw Error("tag: 1 to 128 characters");
        }
        ro_.host = hp->host;
        ro_.port = hp->port;
        if (!o.redisPassword.empty()) {
            ro_.password = o.redisPassword;
        }
        ro_.connectTimeoutMs = std::min(1000, o.leaseMs / 3);
        ro_.readTimeoutMs = std::min(2000, o.leaseMs / 3);
    }
    ~RedisLease() override { stop(); }

    void start() override {
        thread_ = std::thread([this] { run(); });
    }
    void stop() override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) {
                return;
            }
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    bool acting() override {
        std::lock_guard<std::mutex> lock(mu_);
        return until_ > std::chrono::steady_clock::now();
    }

    void announce(const std::string& topologyJson) override {
        if (!acting()) {
            return;
        }
        std::lock_guard<std::mutex> lock(mu_);
        pending_ = topologyJson;
        cv_.notify_all();
    }

  private:
    void run() {
        redis::Client client(ro_);
        redis::Lease lease(client, "mysqlprobe:" + o_.tag + ":leader", o_.owner, o_.leaseMs);
        bool held = false;
        std::unique_lock<std::mutex> lock(mu_);
        while (!stopping_) {
            std::string announce;
            std::swap(announce, pending_);
            lock.unlock();
            bool now = false;
            std::chrono::steady_clock::time_point until{};
            try {
                now = lease.acquireOrRenew();
                until = lease.heldUntil();
                if (now && !announce.empty()) {
                    client.command({"SET", "mysqlprobe:" + o_.tag + ":master", announce});
                    client.command({"PUBLISH", o_.topic,
                                    "{\"tag\":" + jsonString(o_.tag) + ",\"by\":" +
                                        jsonString(o_.owner) + ",\"topology\":" + announce + "}"});
                }
                if (failing_) {
                    failing_ = false;
                    log_(MP_LOG_INFO, "coordination: redis " + client.where() + " answers again");
                }
            } catch (const std::exception& e) {
                if (!failing_) {
                    failing_ = true;
                    log_(MP_LOG_WARN, std::string("coordination: ") + e.what() +
                                          " (this monitor does not act until it holds the lease)");
                }
            }
            if (now != held) {
                held = now;
                log_(MP_LOG_INFO, std::string("coordination: this monitor ") +
                                      (now ? "holds" : "no longer holds") + " the lease " +
                                      lease.key() + (now ? ": it acts" : ": it watches"));
            }
            lock.lock();
            until_ = now ? until : std::chrono::steady_clock::time_point{};
            cv_.wait_for(lock, std::chrono::milliseconds(o_.leaseMs / 3),
                         [&] { return stopping_ || !pending_.empty(); });
        }
        lock.unlock();
        if (held) {
            try {
                lease.release();  // the next monitor takes over at once, not after the ttl
            } catch (const std::exception&) {
            }
        }
    }

    CoordinationOptions o_;
    std::function<void(int, const std::string&)> log_;
    redis::Options ro_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    bool failing_ = false;
    std::string pending_;
    std::chrono::steady_clock::time_point until_{};
    std::thread thread_;
};

}  // namespace

std::unique_ptr<Coordination> makeCoordination(const CoordinationOptions& o, const Host& host,
                                               std::function<void(int, const std::string&)> log) {
    if (o.mode == "none") {
        return std::make_unique<Everyone>();
    }
    if (o.mode == "cluster") {
        return std::make_unique<ClusterMaster>(host);
    }
    if (o.mode == "redis") {
        return std::make_unique<RedisLease>(o, std::move(log));
    }
    throw Error("coordination: none, cluster or redis; not '" + o.mode + "'");
}

}  // namespace mp::monitor
