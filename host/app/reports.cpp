// SPDX-License-Identifier: Apache-2.0
// The node report: the decoder's section of the interval, the stream layer's capture figures and
// the node's counters, delivered to the cluster plugin (or straight to the sinks).
#include <iostream>
#include <mp/report.hpp>
#include <mp/sdk.hpp>
#include <set>
#include <sstream>

#include "app/runtime.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "plugin/dispatch.hpp"

namespace mp::host {

// Every decoder slot's members, joined (decoders that share a node use distinct report keys).
std::string Runtime::collectSection(uint64_t seq, uint64_t ts) {
    std::lock_guard<std::mutex> collect(collectMutex_);
    std::string all;
    for (const auto& group : decoderGroups(true)) {
        std::string members = collectGroup(group, seq, ts);
        if (!members.empty()) {
            all += (all.empty() ? "" : ",") + members;
        }
    }
    return all;
}

std::string Runtime::collectGroup(const std::vector<Instance*>& workers, uint64_t seq,
                                  uint64_t ts) {
    if (workers.empty()) {
        return "";
    }
    Instance& first = *workers[0];
    if (first.desc().collect != nullptr) {
        // ABI 1.3: each worker's part, taken between the records its worker handles; then one
        // report() of them all.
        std::vector<void*> parts(workers.size(), nullptr);
        for (size_t i = 0; i < workers.size(); ++i) {
            auto take = [&] { parts[i] = dispatch::collect(*workers[i], seq, ts); };
            if (!pipeline_) {
                take();  // no stream layer: no worker to wait for
            } else if (!pipeline_->withWorker(i, kCollectWait, take)) {
                // Its interval stays with it and goes into the next report.
                collectsLate_->value.fetch_add(1, std::memory_order_relaxed);
            }
        }
        std::string members;
        if (dispatch::report(first, parts.data(), parts.size(), members) != MP_OK) {
            log(MP_LOG_ERROR, first.host->name,
                "report() failed: " +
                    (first.host->error.empty() ? "no reason given" : first.host->error));
            return "";
        }
        return members;
    }
    // ABI 1.0-1.2: worker 0 gathers every worker's interval itself and answers MP_EVENT_COLLECT
    // with MP_EVENT_PARTIAL: a JSON object whose members join the report's top level.
    {
        std::lock_guard<std::mutex> lock(sectionMutex_);
        section_.clear();
    }
    mp_event ev{};
    ev.struct_size = sizeof ev;
    ev.type = MP_EVENT_COLLECT;
    ev.ts_ns = ts;
    ev.seq = seq;
    dispatch::event(first, ev);
    std::lock_guard<std::mutex> lock(sectionMutex_);
    size_t open = section_.find('{');
    size_t close = section_.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close <= open + 1) {
        return "";
    }
    return section_.substr(open + 1, close - open - 1);
}

void Runtime::flushReport(bool final) {
    std::string json;
    uint64_t seq = 0;
    uint64_t end = wallClockNs();
    {
        std::lock_guard<std::mutex> lock(reportMutex_);
        if (final && finalSent_) {
            return;
        }
    }
    std::string section = collectSection(reportSeq_ + 1, end);
    {
        std::lock_guard<std::mutex> lock(reportMutex_);
        if (final && finalSent_) {
            return;  // one final report per run (end of input, then shutdown)
        }
        finalSent_ = finalSent_ || final;
        seq = ++reportSeq_;
        std::ostringstream out;
        out << "{\"version\":1,\"node\":" << mp::jsonString(nodeName_)
            << ",\"started_ns\":" << startedNs_ << ",\"seq\":" << seq
            << ",\"final\":" << (final ? "true" : "false")
            << ",\"interval\":{\"start_ns\":" << intervalStartNs_ << ",\"end_ns\":" << end
            << "},\"capture\":" << captureJson() << (section.empty() ? "" : ",") << section
            << ",\"stats\":" << metrics_.json() << "}";
        json = out.str();
        intervalStartNs_ = end;
        lastReport_ = json;
    }
    reportsOut_->value.fetch_add(1, std::memory_order_relaxed);
    deliverReport(json, seq, end);
    if (final && options_.printFinalReport) {
        if (options_.reportFormat == "table") {
            std::cout << mp::report::table(json);
        } else {
            std::cout << json << std::endl;
        }
    }
}

void Runtime::deliverReport(const std::string& json, uint64_t seq, uint64_t ts) {
    mp_event ev{};
    ev.struct_size = sizeof ev;
    ev.type = MP_EVENT_REPORT;
    ev.ts_ns = ts;
    ev.seq = seq;
    ev.content_type = mp_str{"application/json", 16};
    ev.payload = mp_bytes{reinterpret_cast<const uint8_t*>(json.data()), json.size()};
    // A cluster plugin, when present, decides what reaches the sinks (it may merge or forward).
    bool cluster = false;
    for (auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_CLUSTER && inst->host->running) {
            cluster = true;
            dispatch::event(*inst, ev);
        }
    }
    if (!cluster) {
        toSinks(ev);
    }
}

void Runtime::toSinks(const mp_event& ev) {
    for (auto& inst : instances_) {
        if (inst->host->kind != MP_KIND_SINK || !inst->takesReports) {
            continue;
        }
        mp_status st = dispatch::event(*inst, ev);
        if (st == MP_OK) {
            inst->lastSinkStatus = MP_OK;
        } else if (st != MP_ECLOSED) {
            // A sink that could not take a report: counted under its name, logged the first
            // time (and whenever the status changes), never retried by the host.
            mp_counter* c =
                metrics_.get(inst->host->name, "reports_refused_total",
                             "reports the sink answered with an error (host count)", MP_COUNTER);
            c->value.fetch_add(1, std::memory_order_relaxed);
            if (inst->lastSinkStatus.exchange(st) != st) {
                log(MP_LOG_WARN, inst->host->name,
                    inst->host->slot + " refused report " + std::to_string(ev.seq) + " (status " +
                        std::to_string(st) +
                        (inst->host->error.empty() ? "" : ": " + inst->host->error) + ")");
            }
        }
    }
}

std::string Runtime::captureJson() const {
    if (!pipeline_) {
        return "{}";
    }
    CaptureStats c = pipeline_->captureStats();
    FlowStats f = pipeline_->flowStats();
    // The standard capture counters (abi.h MP_CAPTURE_*) of every capture plugin, summed; the
    // instances of one plugin share their counters, so each plugin counts once.
    auto gauge = [&](const char* name) -> int64_t {
        int64_t sum = 0;
        std::set<std::string> seen;
        for (const auto& inst : instances_) {
            if (inst->host->kind == MP_KIND_CAPTURE && seen.insert(inst->host->name).second) {
                int64_t v =
                    metrics_.value("mysqlprobe_" + metricName(inst->host->name) + "_" + name);
                sum += v < 0 ? 0 : v;
            }
        }
        return sum;
    };
    std::ostringstream out;
    out << "{\"packets\":" << c.frames << ",\"bytes\":" << c.bytes << ",\"tcp_segments\":" << c.tcp
        << ",\"kernel_dropped\":" << gauge(MP_CAPTURE_KERNEL_DROPPED)
        << ",\"interface_dropped\":" << gauge(MP_CAPTURE_INTERFACE_DROPPED)
        << ",\"probe_dropped\":" << c.queueDropped
        << ",\"truncated_snaplen\":" << gauge(MP_CAPTURE_TRUNCATED)
        << ",\"truncated_headers\":" << c.truncatedHeaders << ",\"not_ip\":" << c.notIp
        << ",\"not_tcp\":" << c.notTcp << ",\"ip_fragments\":" << c.fragments
        << ",\"malformed\":" << c.malformed << ",\"unsupported_link\":" << c.unsupportedLink
        << ",\"not_server_port\":" << f.notServerPort << ",\"connections\":{\"opened\":" << f.opened
        << ",\"midstream\":" << f.midstream << ",\"closed_fin\":" << f.closed[MP_CLOSE_FIN]
        << ",\"closed_rst\":" << f.closed[MP_CLOSE_RST]
        << ",\"closed_idle\":" << f.closed[MP_CLOSE_IDLE]
        << ",\"evicted\":" << f.closed[MP_CLOSE_EVICTED]
        << ",\"closed_shutdown\":" << f.closed[MP_CLOSE_SHUTDOWN] << "}"
        << ",\"stream_bytes\":" << f.reassembly.deliveredBytes << ",\"gaps\":" << f.reassembly.gaps
        << ",\"gap_bytes\":" << f.reassembly.gapBytes
        << ",\"buffer_limit_gaps\":" << f.reassembly.bufferLimitGaps
        << ",\"worker_buffer_limit_gaps\":" << f.reassembly.workerLimitGaps
        << ",\"retransmitted_bytes\":" << f.reassembly.retransmittedBytes
        << ",\"out_of_order_segments\":" << f.reassembly.outOfOrder
        << ",\"overlap_conflict_bytes\":" << f.reassembly.conflictBytes << "}";
    return out.str();
}

}  // namespace mp::host
