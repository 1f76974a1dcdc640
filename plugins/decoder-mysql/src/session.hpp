// SPDX-License-Identifier: Apache-2.0
// One MySQL connection: handshake, login, commands matched to their responses (pipelined,
// multi-result, cursors, LOCAL INFILE, change-user), one Transaction per client command.
// A pure core: no plugin or host types, so tests and the fuzzer drive it directly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fingerprint.hpp"
#include "framing.hpp"
#include "params.hpp"
#include "protocol.hpp"

namespace mp::mysql {

/// "COM_QUERY" etc.; "COM_UNKNOWN_0x42" for others.
const std::string& commandName(uint8_t cmd);

/// How a command ended.
enum class Outcome { None, Ok, Error, ResultSet, Prepared, Lost };

/// One client command and its response.
struct Transaction {
    uint8_t command = 0;
    uint32_t connectionId = 0;  // the server's thread id (from its greeting; 0 when not seen)
    uint64_t requestTs = 0;
    uint64_t firstResponseTs = 0;
    uint64_t responseTs = 0;  // end of the response (0 when none)
    Outcome outcome = Outcome::None;
    std::string sql;  // bounded; for executes, the prepared text
    // Executes: the parameters, for samples. Usually kept undecoded (`executeParams`); blocks
    // too large to keep are decoded at once into `params`. Read both through paramValues().
    std::vector<std::string> params;
    ExecuteParams executeParams;
    std::string fingerprint;  // QUERY, PREPARE, EXECUTE: see fingerprint.hpp
    uint64_t fingerprintId = 0;
    uint32_t statementId = 0;
    uint16_t errorCode = 0;
    std::string sqlState;
    std::string errorMessage;  // bounded
    uint64_t rowsReturned = 0;
    uint64_t rowsAffected = 0;
    uint64_t lastInsertId = 0;
    uint16_t warnings = 0;
    uint16_t statusFlags = 0;  // OR of every status seen in the response
    uint32_t resultSets = 0;
    uint64_t requestBytes = 0;
    uint64_t responseBytes = 0;
    std::string user;
    std::string schema;
    // With SessionLimits::keepPackets: the command packet's payload as sent (byte 0 is the
    // command), a prefix when `packetTruncated`.
    std::string packet;
    bool packetTruncated = false;

    /// The parameters as SQL literals (empty when none or when they do not decode).
    std::vector<std::string> paramValues() const;
    /// Back to a default-constructed state, keeping the strings' capacity (and with
    /// `keepLogin`, the user and schema: the session knows whether they are still current).
    void reset(bool keepLogin = false);
};

/// What a connection learned at login.
struct LoginInfo {
    std::string serverVersion;
    uint32_t connectionId = 0;
    std::string user;
    std::string schema;
    bool tls = false;
    bool compressed = false;
    bool failed = false;
    uint16_t errorCode = 0;
    uint32_t clientFlags = 0;  // the client's capability flags
    uint16_t collation = 0;    // the client's collation id
};

struct SessionLimits {
    size_t maxSql = 1024;         // bytes of SQL kept per transaction
    size_t maxStatements = 1024;  // prepared statements remembered per connection
    size_t maxPending = 256;      // pipelined commands awaiting a response
    // Keep each command's bytes in Transaction::packet (the traffic collector): commands up to
    // maxCommandBytes whole, and at most maxPendingPacketBytes held by the commands of one
    // connection awaiting their response (beyond: kept empty, marked truncated).
    bool keepPackets = false;
    size_t maxCommandBytes = 1 << 20;
    size_t maxPendingPacketBytes = 16 << 20;
};

/// The texts of prepared statements, and the parameter types their executes bind, shared by
/// the sessions of one decoder worker: the connections of an application prepare the same
/// statements and bind the same types, so each is kept once however many connections hold it
/// (10,000 pooled connections with 38 statements each: one copy of 38 texts).
/// Reference-counted by the sessions; one thread.
class StatementTexts {
  public:
    struct Text {
        std::string sql;
        Fingerprint fp;
        uint32_t refs = 0;
    };
    struct Types {
        std::vector<uint8_t> bytes;  // 2 per parameter
        uint32_t refs = 0;
    };
    StatementTexts() = default;
    StatementTexts(const StatementTexts&) = delete;
    StatementTexts& operator=(const StatementTexts&) = delete;
    /// The shared text (one more reference).
    const Text* acquire(const std::string& sql, const std::string& fp, uint64_t fpId);
    void release(const Text* t);
    const Types* acquireTypes(const std::vector<uint8_t>& bytes);
    void release(const Types* t);
    size_t size() const { return texts_.size(); }
    size_t typeSets() const { return types_.size(); }

  private:
    struct Key {
        uint64_t fpId;
        std::string_view sql;  // the Text's own
        bool operator==(const Key& o) const { return fpId == o.fpId && sql == o.sql; }
    };
    struct KeyHash {
        size_t operator()(const Key& k) const {
            return std::hash<std::string_view>()(k.sql) ^ (k.fpId * 0x9e3779b97f4a7c15ULL);
        }
    };
    std::unordered_map<Key, std::unique_ptr<Text>, KeyHash> texts_;
    std::unordered_map<std::string_view, std::unique_ptr<Types>> types_;  // keys: their bytes
};

/// A session a server had open before the capture began (its process list): what a connection
/// seen mid-stream from that client address is, and the statements it had prepared (its
/// performance_schema), by statement id.
struct ServerSession {
    uint32_t id = 0;
    std::string user;
    std::string schema;
    std::unordered_map<uint32_t, std::string> statements;
};

/// Counters of a session (plain integers; one thread).
struct SessionStats {
    uint64_t packetsIn = 0;
    uint64_t unexpectedPackets = 0;     // a server packet with no command waiting
    uint64_t resyncs = 0;               // restarts after a gap or garbage
    uint64_t lostResponses = 0;         // commands whose response was lost to a gap
    uint64_t unknownStatements = 0;     // executes of a statement prepared before capture
    uint64_t statementsFromServer = 0;  // such statements whose text the server gave
    uint64_t statementEvictions = 0;
    uint64_t tlsSessions = 0;
    uint64_t decompressErrors = 0;
};

class Session {
  public:
    using Emit = std::function<void(const Transaction&)>;
    /// The end of a login: accepted, or refused (login().failed); `ts` of the server's answer.
    using LoginHook = std::function<void(const LoginInfo&, uint64_t ts)>;

    /// `texts`: where prepared statements' texts are shared (the decoder worker's); nullptr:
    /// the session keeps its own.
    Session(SessionLimits limits, bool midstream, Emit emit, StatementTexts* texts = nullptr);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    /// dir 0: client to server, 1: server to client.
    void data(uint32_t dir, const uint8_t* p, size_t n, uint64_t ts);
    void gap(uint32_t dir, uint64_t len, uint64_t ts);
    /// Connection end: pending commands are emitted as lost.
    void close(uint64_t ts);

    void onLogin(LoginHook hook) { loginHook_ = std::move(hook); }
    /// A connection seen mid-stream that the server listed before the capture: its connection
    /// id, user and schema from now on, and executes of the statements it had prepared
    /// resolved to their text (their parameters are not decoded: their count and types went
    /// by before the capture). `known` outlives the session. Ignored once a login was seen.
    void assume(const ServerSession* known);
    const LoginInfo& login() const { return login_; }
    const SessionStats& stats() const { return stats_; }
    bool tls() const { return phase_ == Phase::Tls; }

  private:
    enum class Phase { Greeting, Login, Auth, Command, Tls, Resync };
    // Where a pending command's response parser is.
    enum class Resp {
        Start,          // nothing yet
        Columns,        // column definitions of a result set
        ColumnsEof,     // the EOF after them
        Rows,           // rows until EOF/OK
        PrepareParams,  // prepare-OK: parameter definitions (+EOF)
        PrepareParamsEof,
        PrepareColumns,
        PrepareColumnsEof,
        FieldList,     // column definitions until EOF
        Infile,        // LOCAL INFILE: the client is sending the file
        InfileResult,  // the OK/ERR after the file
        Auth,          // change-user: auth exchange
    };
    struct Pending {
        Transaction tx;
        Resp state = Resp::Start;
        uint64_t columns = 0;
        uint64_t left = 0;  // definitions still expected
        uint64_t params = 0;
        bool binary = false;  // binary protocol rows
        bool cursor = false;
        std::string newSchema;  // COM_CHANGE_USER: the schema it asks for
        uint32_t loginGen = 0;  // the login_ generation that tx.user and tx.schema are of
        bool done = false;      // a command without a response, behind others: emitted in turn
    };

    void clientPacket(const Packet& p);
    void serverPacket(const Packet& p);
    void greeting(const Packet& p);
    void handshakeResponse(const Packet& p);
    void command(const Packet& p);
    void respond(Pending& pc, const Packet& p);
    void finish(Outcome o, uint64_t ts);
    void loginEnded(uint64_t ts);
    uint16_t parseOk(Transaction& tx, const uint8_t* d, size_t n);  // returns its status
    void parseErr(Transaction& tx, const uint8_t* d, size_t n);
    bool isEof(const Packet& p) const;
    void forgetStatements();
    void userChanged(const std::string& user, const std::string& schema);
    void lose(uint64_t ts);
    void armRowRun();
    void resync(uint32_t dir, const uint8_t* p, size_t n, uint64_t ts);

    SessionLimits limits_;
    Emit emit_;
    Phase phase_;
    Framer framer_[2];
    RowRun rowRun_;  // the server framer counts runs of rows here (armRowRun)
    LoginInfo login_;
    uint32_t serverCaps_ = 0;
    uint32_t serverExt_ = 0;  // MariaDB extended capabilities
    uint32_t clientCaps_ = 0;
    uint32_t clientExt_ = 0;
    bool deprecateEof_ = false;
    bool cacheMetadata_ = false;
    bool pendingCompression_ = false;
    bool serverSeen_ = false;  // any server bytes yet (a greeting can only be the first)
    // Commands awaiting their response, oldest first. Slots are reused, so their strings keep
    // their capacity: steady traffic allocates nothing per command.
    class PendingQueue {
      public:
        bool empty() const { return n_ == 0; }
        size_t size() const { return n_; }
        Pending& front() { return slots_[head_]; }
        Pending& at(size_t i) { return slots_[(head_ + i) % slots_.size()]; }  // 0: oldest
        Pending& pushBack();  // a reset slot at the back
        void popBack() { --n_; }
        void popFront() {
            head_ = head_ + 1 == slots_.size() ? 0 : head_ + 1;
            --n_;
        }

      private:
        std::vector<Pending> slots_;
        size_t head_ = 0;
        size_t n_ = 0;
    };
    PendingQueue pending_;
    // Prepared statements, oldest first (the first forgotten at the bound). Servers number a
    // connection's statements upwards, so ids are found by binary search; by a scan if not.
    struct Statement {
        uint32_t id = 0;
        uint16_t params = 0;
        const StatementTexts::Text* text = nullptr;  // a reference held in texts_
        // Bound by the last execute that sent them (nullptr: none yet); held in texts_.
        const StatementTexts::Types* types = nullptr;
    };
    std::vector<Statement> statements_;
    bool idsAscending_ = true;
    Statement* findStatement(uint32_t id);
    // A statement the server had prepared before the capture (known_), now remembered.
    Statement* adoptKnown(uint32_t id);
    const ServerSession* known_ = nullptr;
    void eraseStatement(Statement* s);
    // The long data sent for statement `id`, or longData_.end().
    std::vector<std::pair<uint32_t, std::vector<bool>>>::iterator findLongData(uint32_t id);
    // Parameters sent by COM_STMT_SEND_LONG_DATA, by statement, until its execute (rarely any).
    std::vector<std::pair<uint32_t, std::vector<bool>>> longData_;
    std::vector<uint8_t> boundScratch_;  // an execute's types, before they are shared
    std::unique_ptr<StatementTexts> ownTexts_;
    StatementTexts* texts_;
    uint32_t lastPrepared_ = 0xffffffff;
    uint32_t loginGen_ = 1;  // bumped at every change of login_.user or login_.schema
    LoginHook loginHook_;
    size_t pendingPacketBytes_ = 0;  // Transaction::packet bytes of the pending commands
    SessionStats stats_;
};

}  // namespace mp::mysql
