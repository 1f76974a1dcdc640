// SPDX-License-Identifier: Apache-2.0
// source-binlog: row-based binary log events as change records (stream `binlog.rows`) in the
// message formats of MySQL Monitor, streamed live as a replica (`host:`) or read from binlog
// files on disk (`files:`). Live, the checkpoint (GTID state, file and position) is written
// only once every record before it is delivered (the host's delivered mark), so a crash loses
// nothing: the changes after the checkpoint are read again, with the same record ids. The
// README has the messages, the value types and the keys.
#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mp/sdk.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "binlog.hpp"
#include "checkpoint.hpp"
#include "file_reader.hpp"
#include "message.hpp"
#include "replica.hpp"
#include "window.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"files", MP_PROP_STRING_LIST, 0, "", "binlog files to read, in this order (offline: the node stops once they are read and their records delivered); empty: replicate from host", 0, 0, nullptr},
    {"host", MP_PROP_STRING, 0, "", "server to replicate from (live), host name or address", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "3306", "its port", 1, 65535, nullptr},
    {"user", MP_PROP_STRING, 0, "repl", "user with REPLICATION SLAVE and REPLICATION CLIENT (mysql_native_password)", 0, 0, nullptr},
    {"password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password", 0, 0, nullptr},
    {"tls", MP_PROP_STRING, 0, "off", "TLS to the server (as the MySQL clients' --ssl-mode): off, required (encrypted, certificate not checked), verify_ca (signed by a CA of tls_ca), verify_identity (and issued for host)", 0, 0, "off|required|verify_ca|verify_identity"},
    {"tls_ca", MP_PROP_STRING, 0, "", "PEM file of the CAs that sign the server's certificate (verify_ca, verify_identity); empty: the system's", 0, 0, nullptr},
    {"server_id", MP_PROP_INT, 0, "4243", "server id this replica registers with (unique among the server's replicas)", 1, 4294967295LL, nullptr},
    {"start", MP_PROP_STRING, 0, "current", "without a checkpoint: from the server's current position, or from its oldest binlog", 0, 0, "current|beginning"},
    {"start_gtid", MP_PROP_STRING, 0, "", "without a checkpoint: MariaDB GTID state to start after (\"0-1-100\")", 0, 0, nullptr},
    {"start_file", MP_PROP_STRING, 0, "", "without a checkpoint: binlog file to start in (MySQL, or MariaDB by position)", 0, 0, nullptr},
    {"start_position", MP_PROP_INT, 0, "4", "with start_file: position to start at", 4, INT64_MAX, nullptr},
    {"checkpoint", MP_PROP_STRING, 0, "", "checkpoint file (default: STATEDIR/source-binlog-SERVER_ID.checkpoint)", 0, 0, nullptr},
    {"checkpoint_ms", MP_PROP_INT, 0, "200", "the checkpoint is written at most this often (and at stop)", 10, 60000, nullptr},
    {"heartbeat_s", MP_PROP_INT, 0, "5", "the server sends a heartbeat after this much idle time; a heartbeat message is published for each", 1, 3600, nullptr},
    {"heartbeat_messages", MP_PROP_BOOL, 0, "true", "publish MySQL Monitor's heartbeat message on each server heartbeat", 0, 0, nullptr},
    {"connect_timeout_ms", MP_PROP_INT, 0, "5000", "connect and login timeout", 100, 600000, nullptr},
    {"reconnect_max_ms", MP_PROP_INT, 0, "5000", "backoff between attempts doubles from 100 ms up to this", 100, 600000, nullptr},
    {"stream", MP_PROP_STRING, 0, "binlog.rows", "stream of the records", 0, 0, nullptr},
    {"include", MP_PROP_STRING_LIST, 0, "*.*", "tables whose changes are published, as schema.table patterns (* and ? wildcards)", 0, 0, nullptr},
    {"exclude", MP_PROP_STRING_LIST, 0, "", "tables left out even when included (patterns as include)", 0, 0, nullptr},
    {"full_images", MP_PROP_BOOL, 0, "false", "row_update carries every column before and after (not only the changed ones); row_delete its before_values", 0, 0, nullptr},
    {"dedupe_s", MP_PROP_INT, 0, "0", "de-duplication window, seconds of binlog time: later changes of the same row within it merge into the first (README: the rules); 0: off", 0, 3600, nullptr},
    {"dedupe_max_mb", MP_PROP_INT, 0, "64", "bytes the window holds at most (MiB); past it the oldest changes leave early", 1, 4096, nullptr},
    {"verify_checksums", MP_PROP_BOOL, 0, "true", "check each event's CRC32 when the binlog has them (a mismatch stops the reading with its position)", 0, 0, nullptr},
    {"max_event_mb", MP_PROP_INT, 0, "256", "largest event read (MiB); a larger one stops the reading with its position", 1, 1024, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

// Which tables' rows are published: include patterns minus exclude patterns, decided once
// per table (bounded: the cache is dropped when it grows past 100,000 tables).
class Filter {
  public:
    Filter(std::vector<std::string> include, std::vector<std::string> exclude)
        : include_(std::move(include)), exclude_(std::move(exclude)) {}
    static bool call(void* self, std::string_view schema, std::string_view table) {
        return static_cast<Filter*>(self)->wanted(schema, table);
    }
    bool wanted(std::string_view schema, std::string_view table) {
        std::string name;
        name.reserve(schema.size() + table.size() + 1);
        name.append(schema).append(".").append(table);
        auto it = cache_.find(name);
        if (it != cache_.end()) {
            return it->second;
        }
        auto any = [&](const std::vector<std::string>& patterns) {
            for (const auto& p : patterns) {
                if (!p.empty() && fnmatch(p.c_str(), name.c_str(), 0) == 0) {
                    return true;
                }
            }
            return false;
        };
        bool w = any(include_) && !any(exclude_);
        if (cache_.size() > 100000) {
            cache_.clear();
        }
        cache_.emplace(std::move(name), w);
        return w;
    }

  private:
    std::vector<std::string> include_, exclude_;
    std::unordered_map<std::string, bool> cache_;
};

class BinlogSource : public mp::Plugin, public mp::RecordProducer, mp::binlog::Handler {
  public:
    BinlogSource(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          files_(cfg.list("files")),
          stream_(cfg.str("stream")),
          filter_(cfg.list("include"), cfg.list("exclude")),
          maxEvent_(static_cast<size_t>(cfg.i64("max_event_mb")) << 20),
          decoder_(*this),
          rows_(host.counter("rows_total", "row changes published")),
          events_(host.counter("events_total", "binlog events read")),
          transactions_(host.counter("transactions_total", "transactions committed")),
          skipped_(host.counter("skipped_row_events_total",
                                "row events of tables the filters leave out")),
          bytes_(host.counter("bytes_read_total", "binlog bytes read")),
          delivered_(host.counter("delivered_seq", "highest record seq delivered to every sink",
                                  MP_GAUGE)),
          connected_(host.counter("connected", "1 while streaming from the server", MP_GAUGE)),
          reconnects_(host.counter("reconnects_total", "connections made after the first")),
          failures_(host.counter("failures_total", "failed connections and broken streams")),
          lag_(host.counter("lag_seconds", "now minus the time of the last event read (live)",
                            MP_GAUGE)),
          checkpoints_(host.counter("checkpoints_total", "checkpoints written")),
          merged_(host.counter("dedupe_merged_total",
                               "changes merged into one waiting in the de-duplication window")),
          early_(host.counter("dedupe_early_total",
                              "changes that left the window early (dedupe_max_mb reached)")) {
        host.set("records.backpressure", "wait");  // a full buffer pauses the reading
        options_.fullImages = cfg.boolean("full_images");
        decoder_.verifyChecksums(cfg.boolean("verify_checksums"));
        decoder_.setFilter(&Filter::call, &filter_);
        if (cfg.i64("dedupe_s") > 0) {
            window_ = std::make_unique<mp::binlog::Window>(
                static_cast<uint64_t>(cfg.i64("dedupe_s")),
                static_cast<size_t>(cfg.i64("dedupe_max_mb")) << 20,
                [this](const mp::binlog::Change& c) { publish(c); });
        }
        server_.host = cfg.str("host");
        if (files_.empty() == server_.host.empty()) {
            throw mp::Error(files_.empty() ? "give files (binlog files to read) or host (a server "
                                             "to replicate from)"
                                           : "files and host: one or the other");
        }
        if (!server_.host.empty()) {
            server_.port = static_cast<uint16_t>(cfg.i64("port"));
            server_.user = cfg.str("user");
            server_.password = cfg.str("password");
            server_.tls = mp::mysql::parseTls(cfg.str("tls")).value_or(mp::mysql::Tls::Off);
            server_.tlsCa = cfg.str("tls_ca");
            server_.connectTimeoutMs = static_cast<int>(cfg.i64("connect_timeout_ms"));
            server_.maxPacket = maxEvent_ + 64;
            stream_opts_.serverId = static_cast<uint32_t>(cfg.i64("server_id"));
            stream_opts_.heartbeatS = static_cast<int>(cfg.i64("heartbeat_s"));
            server_.readTimeoutMs = stream_opts_.heartbeatS * 2000 + 5000;
            heartbeats_ = cfg.boolean("heartbeat_messages");
            reconnectMaxMs_ = static_cast<int>(cfg.i64("reconnect_max_ms"));
            checkpointNs_ = static_cast<uint64_t>(cfg.i64("checkpoint_ms")) * 1000000;
            checkpointPath_ = cfg.str("checkpoint");
            if (checkpointPath_.empty()) {
                checkpointPath_ = host.get("state.dir").value_or(".") + "/source-binlog-" +
                                  std::to_string(stream_opts_.serverId) + ".checkpoint";
            }
            startFrom(cfg);
            decoder_.setCompletion(&BinlogSource::completeHook, this);
        }
    }

    ~BinlogSource() override {
        stop();
        flushCheckpoint(true);  // the last delivered marks come after stop()
    }

    void start() override {
        stopping_ = false;
        if (!server_.host.empty()) {
            connectAtStart();
            thread_ = std::thread([this] { runLive(); });
        } else {
            thread_ = std::thread([this] { runFiles(); });
        }
        timer_.start(host(), 250'000'000, 250'000'000, [this] {
            publishStats();
            flushCheckpoint(false);
        });
    }
    void stop() override {
        stopping_ = true;
        conn_.interrupt();
        if (thread_.joinable()) {
            thread_.join();
        }
        conn_.close();
        meta_.close();
        timer_.stop();
        publishStats();
    }
    void onDelivered(uint64_t seq) override { deliveredSeq_ = seq; }

  private:
    struct Stop {};  // thrown from a handler callback when the host stops

    // Where to start: the checkpoint, else start_gtid / start_file, else `start`.
    void startFrom(const mp::Config& cfg) {
        if (auto c = mp::binlog::loadCheckpoint(checkpointPath_)) {
            start_.useGtid = !c->gtidState.empty() || c->file.empty();
            start_.gtidState = c->gtidState;
            start_.file = c->file;
            start_.position = c->position;
            fromCheckpoint_ = true;
            return;
        }
        if (!cfg.str("start_gtid").empty()) {
            start_.useGtid = true;
            start_.gtidState = cfg.str("start_gtid");
            if (!decoder_.setGtidState(start_.gtidState)) {
                throw mp::Error(
                    "start_gtid: '" + start_.gtidState +
                    "' is not a GTID state (MariaDB: \"0-1-100\" or \"0-1-100,1-2-7\"; MySQL: "
                    "\"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100\")");
            }
            fixedStart_ = true;
        } else if (!cfg.str("start_file").empty()) {
            start_.useGtid = false;
            start_.file = cfg.str("start_file");
            start_.position = static_cast<uint64_t>(cfg.i64("start_position"));
            fixedStart_ = true;
        } else {
            startCurrent_ = cfg.str("start") == "current";
            fixedStart_ = !startCurrent_;  // "beginning": an empty GTID state
        }
    }

    // The first connection, in start(): a server that cannot serve us (no binlog, wrong
    // format, grants, a purged position) refuses the start with its one line; one that does
    // not answer is retried by the thread.
    void connectAtStart() {
        try {
            openConnection();
        } catch (const mp::binlog::ServerError& e) {
            conn_.close();
            if (mp::binlog::needsOperator(e)) {
                throw mp::Error(server_.host + ":" + std::to_string(server_.port) + ": " +
                                mp::binlog::explain(e, start_));
            }
            host().warn(std::string(e.what()) + "; retrying");
        } catch (const mp::mysql::TlsError& e) {
            conn_.close();
            using Reason = mp::mysql::TlsError::Reason;
            const char* todo =
                e.reason() == Reason::NotOffered
                    ? "; give the server ssl_cert and ssl_key, or set tls: off"
                : e.reason() == Reason::WrongHost
                    ? "; host: a name or address the certificate is for (verify_ca does not "
                      "check it)"
                : e.reason() == Reason::Untrusted
                    ? "; tls_ca: the CA that signed the server's certificate (tls: required "
                      "encrypts without checking it)"
                    : "";
            throw mp::Error(e.what() + std::string(todo));
        } catch (const std::exception& e) {
            conn_.close();
            host().warn(std::string(e.what()) + "; retrying");
        }
    }

    void openConnection() {
        conn_.connect(server_);
        if (startCurrent_) {
            start_ = mp::binlog::currentPosition(conn_);
            startCurrent_ = false;
            if (start_.useGtid) {
                decoder_.setGtidState(start_.gtidState);
            }
            host().info("starting at the server's current position: " + describe(start_));
        } else if (fromCheckpoint_ && seq_ == 0) {
            host().info("resuming from the checkpoint: " + describe(start_));
            if (start_.useGtid) {
                decoder_.setGtidState(start_.gtidState);
            }
        }
        auto facts = mp::binlog::openStream(conn_, start_, stream_opts_);
        // The dump's first answer: an event, or the refusal (a purged position...).
        conn_.read(packet_);
        if (!packet_.empty() && static_cast<uint8_t>(packet_[0]) == 0xff) {
            mp::binlog::Connection::raise(packet_);
        }
        decoder_.reset();
        decoder_.assumeChecksum(facts.checksum);
        havePacket_ = true;
        connected_.set(1);
        if (connections_++ > 0) {
            reconnects_.add();
        }
        const std::string tls = conn_.tlsSession();
        host().info("replicating from " + server_.host + ":" + std::to_string(server_.port) + " (" +
                    facts.version + (tls.empty() ? "" : ", " + tls) + ") as server_id " +
                    std::to_string(stream_opts_.serverId) + " from " + describe(start_));
    }

    static std::string describe(const mp::binlog::StreamStart& s) {
        if (s.useGtid) {
            return s.gtidState.empty() ? "the oldest binlog" : "GTID " + s.gtidState;
        }
        return s.file + ":" + std::to_string(s.position);
    }

    void runLive() {
        int backoff = 100;
        while (!stopping_) {
            try {
                if (!conn_.connected()) {
                    openConnection();
                }
                backoff = 100;
                streamEvents();
            } catch (const Stop&) {
                return;
            } catch (const mp::binlog::ServerError& e) {
                if (stopping_) {
                    return;
                }
                failures_.add();
                (mp::binlog::needsOperator(e)
                     ? host().error(mp::binlog::explain(e, start_))
                     : host().warn(std::string(e.what()) + "; reconnecting"));
            } catch (const std::exception& e) {
                if (stopping_) {
                    return;
                }
                failures_.add();
                host().warn(std::string(e.what()) + "; reconnecting");
            }
            flushAfterError();
            conn_.close();
            connected_.set(0);
            havePacket_ = false;
            // Resume at the last transaction boundary read: what followed it is read again
            // (records of a transaction cut in the middle repeat, with the same ids).
            resumeFromCommit();
            for (int waited = 0; waited < backoff && !stopping_; waited += 50) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            backoff = std::min(backoff * 2, reconnectMaxMs_);
        }
    }

    void resumeFromCommit() {
        if (!lastCommit_) {
            return;  // nothing committed yet: start where we started
        }
        if (start_.useGtid && lastCommit_->gtidState.empty() && !lastCommit_->file.empty()) {
            start_.useGtid = false;  // MySQL whose GTID set is not known (tagged GTIDs)
        }
        if (start_.useGtid) {
            start_.gtidState = lastCommit_->gtidState;
            decoder_.setGtidState(start_.gtidState);
        } else {
            start_.file = lastCommit_->file;
            start_.position = lastCommit_->pos;
        }
    }

    void streamEvents() {
        for (;;) {
            if (!havePacket_) {
                conn_.read(packet_);
            }
            havePacket_ = false;
            if (stopping_) {
                throw Stop{};
            }
            const auto first = packet_.empty() ? 0xff : static_cast<uint8_t>(packet_[0]);
            if (first == 0xff) {
                mp::binlog::Connection::raise(packet_);
            }
            if (first == 0xfe && packet_.size() < 9) {
                throw std::runtime_error("the server ended the binlog stream");
            }
            const auto* ev = reinterpret_cast<const uint8_t*>(packet_.data()) + 1;
            if (!decoder_.event(ev, packet_.size() - 1)) {
                throw std::runtime_error(decoder_.error());
            }
            bytesRead_ += packet_.size() - 1;
            mp::binlog::EventHeader h;
            const bool parsed = mp::binlog::parseHeader(ev, packet_.size() - 1, h);
            if (!parsed || (h.type != mp::binlog::kTableMap && !mp::binlog::isRows(h.type))) {
                flush();
            }
            if (parsed && h.timestamp != 0 && h.logPos != 0 && h.type != mp::binlog::kHeartbeat) {
                lastEventS_ = h.timestamp;
            }
        }
    }

    void runFiles() {
        try {
            for (const auto& path : files_) {
                mp::binlog::FileReader file(path, maxEvent_);
                decoder_.startFile(baseName(path));
                const uint8_t* ev = nullptr;
                size_t n = 0;
                while (!stopping_ && file.next(ev, n)) {
                    if (!decoder_.event(ev, n)) {
                        throw mp::Error(path + ": " + decoder_.error());
                    }
                    bytesRead_ += n;
                }
                if (stopping_) {
                    return;
                }
            }
            if (window_) {
                drainWindow(binlogNowS_, true);
            }
            flush();
            host().info("read " + std::to_string(files_.size()) + " file(s): " +
                        std::to_string(decoder_.stats().rows.load()) + " row changes in " +
                        std::to_string(decoder_.stats().transactions.load()) + " transactions");
        } catch (const Stop&) {
            return;
        } catch (const std::exception& e) {
            flushAfterError();
            host().error(e.what());  // what was read before stays published
        }
        host().emit(MP_EVENT_INPUT_END, "", 0, 0, "");
    }

    static std::string baseName(const std::string& path) {
        auto slash = path.rfind('/');
        return slash == std::string::npos ? path : path.substr(slash + 1);
    }

    // Records are gathered and handed to the host a batch at a time (one lock and one wake-up
    // per batch instead of per record): when the batch is full, live at the end of every event
    // but a table map or a rows event (a transaction's rows leave with its commit: nothing waits
    // for the next write), and at the end of the files or of an error.
    static constexpr size_t kBatchRecords = 64;
    static constexpr size_t kBatchBytes = size_t{256} << 10;

    void emit(std::string_view key, const std::string& id, uint64_t tsNs) {
        batch_.add(stream_, std::move(message_), ++seq_, tsNs, key, id);  // no copy
        if (batch_.size() >= kBatchRecords || batch_.bytes() >= kBatchBytes) {
            flush();
        }
    }

    void flush() {
        if (batch_.empty()) {
            return;
        }
        mp_status st = batch_.emit(host());
        if (st == MP_ECLOSED) {
            throw Stop{};
        }
        if (st != MP_OK) {
            throw mp::Error("record refused by the host (status " + std::to_string(st) + ")");
        }
    }

    // After an error: what was decoded before it is published, as it would have been record by
    // record (live, a transaction cut in the middle is read again with the same ids).
    void flushAfterError() {
        try {
            flush();
        } catch (const std::exception& e) {
            host().warn(e.what());
        } catch (const Stop&) {  // stopping: the rest is read again from the checkpoint
        }
    }

    void row(const mp::binlog::EventHeader& h, const mp::binlog::TableMap& t,
             mp::binlog::RowKind kind, const mp::binlog::Image& before,
             const mp::binlog::Image& after, uint32_t index) override {
        const auto& pos = decoder_.position();
        if (index == 0) {
            transactionStart_ = pos.pos;
        }
        uint64_t now = host().nowNs();
        if (window_) {
            auto& shared = mapped_[&t];
            if (!shared || shared->id != t.id || shared->table != t.table ||
                shared->schema != t.schema) {  // (a map the decoder dropped: its address reused)
                shared = std::make_shared<const mp::binlog::TableMap>(t);
            }
            window_->add(h, shared, kind, before, after, pos,
                         mp::binlog::messageId(pos, transactionStart_, index));
            drainWindow(h.timestamp, false);
            return;
        }
        mp::binlog::rowMessage(message_, h, t, kind, before, after, pos, now / 1000000000,
                               options_);
        key_.assign(t.schema).append(".").append(t.table);
        emit(std::string_view(key_).substr(0, 255),
             mp::binlog::messageId(pos, transactionStart_, index),
             uint64_t{h.timestamp} * 1000000000);
    }

    // A change leaving the de-duplication window.
    void publish(const mp::binlog::Change& c) {
        const auto& t = *c.table;
        mp::binlog::rowMessage(message_, c.header, t, c.kind, c.before, c.after, c.position,
                               host().nowNs() / 1000000000, options_,
                               c.kind == mp::binlog::RowKind::Update ? &c.touched : nullptr,
                               c.parts);
        key_.assign(t.schema).append(".").append(t.table);
        emit(std::string_view(key_).substr(0, 255),
             c.lastId.empty() ? c.id : (c.id + ".." + c.lastId).substr(0, 255),
             uint64_t{c.header.timestamp} * 1000000000);
    }

    // Sends what waited long enough; the commits whose changes have all left become resume
    // points (at the seq of the last record sent).
    void drainWindow(uint64_t nowS, bool all) {
        binlogNowS_ = std::max(binlogNowS_, nowS);
        window_->flush(binlogNowS_, all);
        merged_.set(static_cast<int64_t>(window_->stats().merged));
        early_.set(static_cast<int64_t>(window_->stats().early));
        const uint64_t oldest = window_->oldestWaiting();
        while (!windowCommits_.empty() && windowCommits_.front().first <= oldest) {
            noteCommit(windowCommits_.front().second);
            windowCommits_.pop_front();
        }
    }

    // A table map without column names (binlog_row_metadata is not FULL): names, primary key,
    // and what else the binlog lacks from information_schema, on a second connection, kept
    // until a DDL passes. The table as it is now: a change read long after the DDL that
    // preceded it would be named after the newer definition (a column count that differs is
    // noticed: then the names stay @N).
    static void completeHook(void* self, mp::binlog::TableMap& t) {
        static_cast<BinlogSource*>(self)->complete(t);
    }
    void complete(mp::binlog::TableMap& t) {
        std::string name = t.schema + "." + t.table;
        auto it = described_.find(name);
        if (it == described_.end()) {
            try {
                if (!meta_.connected()) {
                    meta_.connect(server_);
                }
                auto rows = meta_.query(
                    "SELECT COLUMN_NAME, COLUMN_KEY, DATA_TYPE, COLUMN_TYPE FROM "
                    "information_schema.COLUMNS WHERE TABLE_SCHEMA = " +
                    mp::binlog::sqlQuote(t.schema) + " AND TABLE_NAME = " +
                    mp::binlog::sqlQuote(t.table) + " ORDER BY ORDINAL_POSITION");
                std::vector<Described> cols;
                for (auto& r : rows) {
                    if (r.size() == 4) {
                        cols.push_back({r[0].value_or(""), r[1].value_or(""), r[2].value_or(""),
                                        r[3].value_or("")});
                    }
                }
                if (described_.size() > 10000) {
                    described_.clear();
                }
                it = described_.emplace(name, std::move(cols)).first;
            } catch (const std::exception& e) {
                meta_.close();
                if (!describeWarned_) {
                    describeWarned_ = true;
                    host().warn(
                        "the binlog has no column names (binlog_row_metadata is not "
                        "FULL) and information_schema cannot be read (" +
                        std::string(e.what()) + "): columns are named @1, @2...");
                }
                return;
            }
        }
        const auto& cols = it->second;
        if (cols.size() != t.columns.size()) {
            return;  // dropped, or changed since this event: @N names
        }
        for (size_t i = 0; i < cols.size(); ++i) {
            auto& c = t.columns[i];
            const auto& d = cols[i];
            c.name = d.name;
            if (d.key == "PRI") {
                c.key = true;
                t.keyed = true;
            }
            if (!t.signs) {
                c.isUnsigned = d.columnType.find("unsigned") != std::string::npos;
            }
            if (!t.charset) {
                c.binary = d.dataType == "binary" || d.dataType == "varbinary" ||
                           d.dataType.find("blob") != std::string::npos;
            }
            if (!t.labels && (d.dataType == "enum" || d.dataType == "set")) {
                c.labels = labelsOf(d.columnType);
            }
        }
        t.named = true;
    }

    // enum('a','b''c') -> a, b'c
    static std::vector<std::string> labelsOf(const std::string& type) {
        std::vector<std::string> out;
        size_t i = type.find('(');
        while (i != std::string::npos && i < type.size()) {
            size_t q = type.find('\'', i);
            if (q == std::string::npos) {
                break;
            }
            std::string label;
            size_t j = q + 1;
            for (; j < type.size(); ++j) {
                if (type[j] == '\'') {
                    if (j + 1 < type.size() && type[j + 1] == '\'') {
                        label += '\'';
                        ++j;
                        continue;
                    }
                    break;
                }
                label += type[j];
            }
            out.push_back(std::move(label));
            i = j + 1;
        }
        return out;
    }

    void ddl(const mp::binlog::EventHeader&, std::string_view, std::string_view) override {
        described_.clear();  // a definition may have changed: asked again when next mapped
    }

    void heartbeat(const mp::binlog::EventHeader&, const mp::binlog::Position& pos) override {
        lastEventS_ = host().nowNs() / 1000000000;  // idle and caught up: no lag
        if (window_) {
            drainWindow(host().nowNs() / 1000000000, false);  // caught up: the binlog's now
        }
        if (!heartbeats_) {
            return;
        }
        uint64_t now = host().nowNs();
        mp::binlog::heartbeatMessage(message_, now / 1000000000, pos);
        emit("heartbeat", "heartbeat/" + std::to_string(now), now);
    }

    // A transaction boundary: safe to resume after once every record up to seq_ is delivered.
    void commit(const mp::binlog::EventHeader&, const mp::binlog::Position& pos) override {
        lastCommit_ = pos;
        if (window_) {
            mapped_.clear();  // the decoder drops its table maps at each commit
            if (!server_.host.empty()) {
                windowCommits_.emplace_back(window_->nextOrder(), pos);
            }
            drainWindow(binlogNowS_, false);
            return;
        }
        noteCommit(pos);
    }

    void noteCommit(const mp::binlog::Position& pos) {
        if (server_.host.empty()) {
            return;  // files: no checkpoint
        }
        std::lock_guard<std::mutex> lock(commitsMutex_);
        if (!commits_.empty() && commits_.back().first == seq_) {
            commits_.back().second = pos;  // nothing emitted since: the newer one covers it
        } else {
            commits_.emplace_back(seq_, pos);
        }
    }

    // The newest commit whose records are all delivered becomes the checkpoint (at most every
    // checkpoint_ms, and at the end).
    void flushCheckpoint(bool force) {
        if (server_.host.empty()) {
            return;
        }
        std::lock_guard<std::mutex> lock(commitsMutex_);
        const uint64_t delivered = deliveredSeq_.load();
        while (!commits_.empty() && commits_.front().first <= delivered) {
            pending_ = commits_.front().second;
            commits_.pop_front();
        }
        const uint64_t now = host().nowNs();
        if (!pending_ || (!force && now - lastCheckpointNs_ < checkpointNs_)) {
            return;
        }
        mp::binlog::Checkpoint c{pending_->gtidState, pending_->file, pending_->pos};
        pending_.reset();
        lastCheckpointNs_ = now;
        std::string why = mp::binlog::saveCheckpoint(checkpointPath_, c);
        if (!why.empty()) {
            host().error("checkpoint " + checkpointPath_ + ": " + why);
        } else {
            checkpoints_.add();
        }
    }

    void publishStats() {
        const auto& s = decoder_.stats();
        rows_.set(static_cast<int64_t>(s.rows));
        events_.set(static_cast<int64_t>(s.events));
        transactions_.set(static_cast<int64_t>(s.transactions));
        skipped_.set(static_cast<int64_t>(s.skippedRows));
        bytes_.set(static_cast<int64_t>(bytesRead_.load()));
        delivered_.set(static_cast<int64_t>(deliveredSeq_.load()));
        if (!server_.host.empty() && lastEventS_.load() != 0) {
            const auto now = static_cast<int64_t>(host().nowNs() / 1000000000);
            lag_.set(std::max<int64_t>(0, now - static_cast<int64_t>(lastEventS_.load())));
        }
    }

    std::vector<std::string> files_;
    std::string stream_;
    Filter filter_;
    size_t maxEvent_;
    mp::binlog::MessageOptions options_;
    mp::binlog::Decoder decoder_;
    std::string message_, key_;
    mp::RecordBatch batch_;
    uint64_t seq_ = 0;
    uint64_t transactionStart_ = 0;
    std::atomic<uint64_t> bytesRead_{0}, deliveredSeq_{0}, lastEventS_{0};
    mp::Counter rows_, events_, transactions_, skipped_, bytes_, delivered_, connected_,
        reconnects_, failures_, lag_, checkpoints_, merged_, early_;
    std::unique_ptr<mp::binlog::Window> window_;  // dedupe_s > 0
    uint64_t binlogNowS_ = 0;                     // the newest event time read (window clock)
    std::unordered_map<const mp::binlog::TableMap*, std::shared_ptr<const mp::binlog::TableMap>>
        mapped_;  // this transaction's table maps, shared by the changes waiting in the window
    std::deque<std::pair<uint64_t, mp::binlog::Position>> windowCommits_;  // (order, position)
    // live
    mp::binlog::ServerAddress server_;
    mp::binlog::StreamOptions stream_opts_;
    mp::binlog::StreamStart start_;
    bool fromCheckpoint_ = false, fixedStart_ = false, startCurrent_ = false;
    bool heartbeats_ = true;
    int reconnectMaxMs_ = 5000;
    mp::binlog::Connection conn_;
    struct Described {
        std::string name, key, dataType, columnType;
    };
    mp::binlog::Connection meta_;  // information_schema, when the binlog has no names
    std::unordered_map<std::string, std::vector<Described>> described_;
    bool describeWarned_ = false;
    std::string packet_;
    bool havePacket_ = false;
    uint64_t connections_ = 0;
    std::optional<mp::binlog::Position> lastCommit_;
    std::mutex commitsMutex_;
    std::deque<std::pair<uint64_t, mp::binlog::Position>> commits_;
    std::optional<mp::binlog::Position> pending_;
    std::string checkpointPath_;
    uint64_t checkpointNs_ = 200000000, lastCheckpointNs_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
    mp::Timer timer_;
};

}  // namespace

MP_DECLARE_PLUGIN(BinlogSource, MP_KIND_SOURCE, "source-binlog", "0.1.0",
                  "Row changes from MariaDB/MySQL binary logs as records (MySQL Monitor's format)",
                  kProps, 0)
