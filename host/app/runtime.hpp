// SPDX-License-Identifier: Apache-2.0
// The running host: plugin instances, their services, the HTTP server and the report pipeline.
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/metrics.hpp"
#include "core/timers.hpp"
#include "plugin/instance.hpp"
#include "plugin/registry.hpp"
#include "server/http_server.hpp"
#include "stream/pipeline.hpp"

namespace mp::host {

/// A start-up failure; what() is one line.
class StartError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct RuntimeOptions {
    bool serveHttp = true;              // false for offline runs without a config file
    bool printFinalReport = false;      // offline: the final report on stdout at end of input
    std::string reportFormat = "json";  // json | table
};

/// The services table every plugin receives.
const mp_host_api* hostApi();

class Runtime {
  public:
    Runtime(HostConfig config, RuntimeOptions options);
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    /// Loads the built-in plugin directory and the configured ones (throws LoadError).
    void loadPlugins(bool includeDefaultDir = true);
    /// Matches slots to plugins and validates their settings (throws ConfigError).
    void resolve();
    /// Creates every instance (throws StartError).
    void create();
    /// Starts the HTTP server, then plugins downstream-first: sinks, cluster, decoders,
    /// capture (throws StartError).
    void start();
    /// Stops everything in reverse start order, then destroys the instances.
    void stop();
    /// Blocks until a plugin or a signal asks to stop; returns the exit code.
    int waitForShutdown();
    /// Asks waitForShutdown() to return `code` (keeps the first request).
    void requestShutdown(int code, const std::string& reason);

    const Registry& registry() const { return registry_; }
    const HostConfig& config() const { return config_; }
    Metrics& metrics() { return metrics_; }
    HttpServer* http() { return http_.get(); }
    const std::vector<std::unique_ptr<Instance>>& instances() const { return instances_; }
    /// The stream layer (null without a capture plugin).
    Pipeline* pipeline() { return pipeline_.get(); }

    // Services used by the C host API.
    void logFrom(mp_host* h, int level, std::string_view msg);
    mp_status emitFrom(mp_host* h, const mp_event& ev);
    mp_status framesFrom(mp_host* h, const mp_frame* frames, size_t count);
    mp_status recordFrom(mp_host* h, const mp_record& rec);
    mp_status recordsFrom(mp_host* h, const mp_record* const* recs, size_t n, size_t& taken);
    void recordDone(uint64_t token, mp_status status);
    mp_status hostGet(mp_host* h, const char* key, mp_str* out);
    mp_status hostSet(mp_host* h, const char* key, std::string_view value);
    mp_counter* counter(mp_host* h, const char* name, const char* help, uint32_t kind);
    mp_timer* timerStart(mp_host* h, uint64_t delay, uint64_t period, void (*fn)(void*),
                         void* user);
    mp_status httpRoute(mp_host* h, const char* path, const mp_route& route);
    mp_status wsEndpoint(mp_host* h, const char* path, const mp_ws_handler* handler);

    /// Builds and delivers the node report for the interval that just ended.
    void flushReport(bool final);
    /// Interval in ms (live-changeable).
    uint64_t intervalMs() const { return intervalMs_.load(); }
    void setIntervalMs(uint64_t ms);

  private:
    std::string healthJson() const;
    std::string captureJson() const;
    std::string collectSection(uint64_t seq, uint64_t ts);
    /// One decoder slot's section: `workers` are its instances in worker order.
    std::string collectGroup(const std::vector<Instance*>& workers, uint64_t seq, uint64_t ts);
    /// The decoder instances by slot (config order), each in worker order.
    std::vector<std::vector<Instance*>> decoderGroups(bool runningOnly) const;
    void createPipeline();
    void deliverReport(const std::string& json, uint64_t seq, uint64_t ts);
    /// A report to every running sink.
    void toSinks(const mp_event& ev);
    void addBuiltinRoutes();
    mp_status callHook(Instance& inst, const char* hook, mp_status st);

    HostConfig config_;
    RuntimeOptions options_;
    Metrics metrics_;
    Registry registry_;
    std::shared_ptr<const Authenticator> auth_;
    std::unique_ptr<HttpServer> http_;
    std::unique_ptr<TimerService> timers_;
    std::unique_ptr<RecordBus> bus_;  // records between producers and sinks
    std::vector<std::unique_ptr<Instance>> instances_;
    std::vector<Instance*> startOrder_;
    std::string nodeName_;
    std::string serverPortText_;
    std::string workersText_;
    std::string stateDir_;  // host_get("state.dir"); empty: none
    std::mutex roleMutex_;  // the cluster plugin's word on this node's role
    std::string clusterRole_ = "standalone";
    std::string clusterMaster_;
    std::string inlineText_;  // "stream.inline", once the stream layer is planned
    std::atomic<uint64_t> intervalMs_{5000};
    std::mutex intervalMutex_;  // intervalMs_ changes and reportTimer_
    mp_timer* reportTimer_ = nullptr;
    mp_timer* wakeTimer_ = nullptr;  // Pipeline::wakeStalled
    static constexpr std::chrono::milliseconds kWakeStalledEvery{100};
    std::mutex reportMutex_;
    uint64_t reportSeq_ = 0;
    bool finalSent_ = false;
    std::mutex collectMutex_;
    std::mutex sectionMutex_;
    std::string section_;  // a 1.0-1.2 decoder's answer to MP_EVENT_COLLECT
    /// How long the report thread waits for a decoder worker that is busy with a read.
    static constexpr std::chrono::milliseconds kCollectWait{2000};
    uint64_t intervalStartNs_ = 0;
    std::string lastReport_;
    std::mutex shutdownMutex_;
    std::condition_variable shutdownCv_;
    bool shutdownRequested_ = false;
    std::atomic<size_t> sourcesEnded_{0};  // sources whose finite input is read
    int exitCode_ = 0;
    uint64_t startedNs_ = 0;
    std::vector<std::unique_ptr<StreamHandler>> handlers_;  // one per worker
    std::unique_ptr<Pipeline> pipeline_;
    mp_counter* reportsOut_;
    mp_counter* eventsDropped_;
    mp_counter* collectsLate_;
};

}  // namespace mp::host
