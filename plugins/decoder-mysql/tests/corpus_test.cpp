// SPDX-License-Identifier: Apache-2.0
// decoder-mysql against other projects' expectations. Every capture of the third-party corpus
// (tests/data/third-party; the GPL/LGPL ones are only read from ../shared/corpus/third-party) is
// reassembled by the host's stream layer, decoded, and compared with what its upstream project
// asserts about it: per-query events (pt-query-digest's MySQLProtocolParser.t), mysql.log rows
// (Zeek), golden per-packet files and perf totals (DeepFlow), full transcripts (pcap2mysql-log),
// transaction counts and fields (Packetbeat), login fields (Arkime, nDPI). The expected values
// are read from the upstream files or, where upstream only states them in its test code, copied
// from the project's EXPECTED.md. `kTable` has one row per capture: what is compared and, where
// the decoder legitimately differs from upstream, why (the differing part is still checked for
// what we do report). docs/third-party-corpus.md summarises the table and the results.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <numeric>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "decode_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace mysql = mp::mysql;
using mptest::mysql::Connection;
using mptest::mysql::Outcome;
using mptest::mysql::Totals;
using mptest::mysql::Transaction;
using JsonObj = Poco::JSON::Object::Ptr;
using JsonArr = Poco::JSON::Array::Ptr;

// ------------------------------------------------------------------------------------------
// The table
// ------------------------------------------------------------------------------------------

struct Tally;
struct Row;
using Custom = void (*)(const Row&, const Totals&, Tally&);

/// How an upstream event differs from what we report (percona-toolkit rows).
enum class Dev {
    Lost,     // we report the request, as lost (no latency, rows or error to compare)
    Latency,  // everything but the latency is compared
    Absent,   // we report no transaction for it
};
struct Deviation {
    size_t event;  // index in the upstream event list of the row's sample
    Dev kind;
};

struct Row {
    const char* project;            // folder under third-party/
    const char* file;               // the capture, relative to it
    std::vector<uint16_t> ports;    // server ports
    const char* upstream;           // what upstream asserts it against (file, test, baseline)
    const char* checks;             // what this test compares
    const char* differs = nullptr;  // where and why the decoder legitimately differs (else null)
    std::vector<Deviation> deviations = {};  // percona-toolkit: upstream events that differ
    int unanswered = 0;       // percona-toolkit: our requests whose response is not in the
                              // capture (pt-query-digest emits no event for them)
    Custom custom = nullptr;  // captures with their own check function
    std::vector<uint16_t> ports2 = {};  // percona-toolkit tcpdump018: second upstream case
    const char* note = nullptr;         // how the upstream output is read, where it matters
};

/// Per project: what was compared.
struct Tally {
    int captures = 0;
    int events = 0;     // upstream items compared (events, log rows, requests, transactions)
    int matched = 0;    // ... equal in every compared field
    int differing = 0;  // ... that differ for a documented reason
};

// Custom checks, defined below the table.
void badTcpdump(const Row&, const Totals&, Tally&);
void tsharkOnly(const Row&, const Totals&, Tally&);
void tcpdump017(const Row&, const Totals&, Tally&);
void tcpdump033(const Row&, const Totals&, Tally&);
void tcpdump039Raw(const Row&, const Totals&, Tally&);
void tcpdump039Vlan(const Row&, const Totals&, Tally&);
void tcpdump041(const Row&, const Totals&, Tally&);
void deepflowPerf171(const Row&, const Totals&, Tally&);
void pbAffectedRows(const Row&, const Totals&, Tally&);
void pbErrNoDb(const Row&, const Totals&, Tally&);
void pbIntStringOps(const Row&, const Totals&, Tally&);
void pbLong(const Row&, const Totals&, Tally&);
void pbLongResult(const Row&, const Totals&, Tally&);
void pbWithGap(const Row&, const Totals&, Tally&);
void pbWhitespaces(const Row&, const Totals&, Tally&);
void arkime(const Row&, const Totals&, Tally&);
void ndpi(const Row&, const Totals&, Tally&);

constexpr const char* kPt = "percona-toolkit";
constexpr const char* kPtJson = "EXPECTED-MySQLProtocolParser.json";
constexpr const char* kPtEvents =
    "events (matched in order by client port and request): SQL or command, statement id "
    "(executes resolved to their PREPARE), error code and text, rows affected, warnings, "
    "no-index flags, user, db, thread id, latency to the first response = Query_time within 1 us";
constexpr const char* kPtConnect =
    "login as pt's Connect event: user, db, thread id, error code (its latency is not exposed)";
constexpr const char* kZeek = "zeek";
constexpr const char* kZeekChecks =
    "mysql.log rows in order: cmd, arg, success, affected rows, error text (login: user, "
    "success)";
constexpr const char* kDf = "deepflow";
constexpr const char* kDfChecks =
    ".result: requests in order (command, SQL, statement id, login user/db) and their response "
    "(error + text, result set, affected rows, prepared statement id)";
constexpr const char* kP2m = "pcap2mysql-log";
constexpr const char* kP2mChecks =
    ".expected transcript per connection: greeting version, login user/error, every command "
    "(SQL, statement id), its response (OK rows/insert id/warnings, ERR code/state/message, "
    "result rows, prepare id), the end of each response to the microsecond";
constexpr const char* kPb = "packetbeat";
constexpr const char* kPbMd = "EXPECTED.md (upstream test assertions)";

const std::vector<uint16_t> k3306{3306};
const std::vector<uint16_t> k12345{12345};

const std::vector<Row> kTable = {
    // pcap2mysql-log (MIT): full transcripts.
    {kP2m, "test/captures/big-data.pcap", k3306, "big-data.expected", kP2mChecks},
    {kP2m, "test/captures/compressed-data-missing.pcap", k3306, "compressed-data-missing.expected",
     kP2mChecks},
    {kP2m, "test/captures/compressed.pcap", k3306, "compressed.expected", kP2mChecks},
    {kP2m, "test/captures/connect-fail.pcap", k3306, "connect-fail.expected", kP2mChecks},
    {kP2m, "test/captures/date-types.pcap", k3306, "date-types.expected", kP2mChecks},
    {kP2m, "test/captures/error-uncompressed.pcap", k3306, "error-uncompressed.expected",
     kP2mChecks},
    {kP2m, "test/captures/error.pcap", k3306, "error.expected", kP2mChecks},
    {kP2m, "test/captures/execute.pcap", k3306, "execute.expected", kP2mChecks},
    {kP2m, "test/captures/insecure.pcap", k3306, "insecure.expected", kP2mChecks},
    {kP2m, "test/captures/numeric-types.pcap", k3306, "numeric-types.expected", kP2mChecks},
    {kP2m, "test/captures/type-error.pcap", k3306, "type-error.expected", kP2mChecks},
    {kP2m, "test/captures/uncompressed-data-present.pcap", k3306,
     "uncompressed-data-present.expected", kP2mChecks},

    // percona-toolkit (GPL-2.0, from ../shared only): pt-query-digest's parser events.
    {.project = kPt,
     .file = "converted-pcap/bad_tcpdump.pcap",
     .ports = k3306,
     .upstream = "pt-query-digest: report contains \"paris in the the spring\"",
     .checks = "no false transaction: only the query that is intact, with its result set",
     .differs =
         "deliberately corrupted dump: the first client frame's IP length claims 37 payload "
         "bytes, the frame holds 2 and its recorded wire length says it was not cut: malformed "
         "(counted, dropped, as a receiver would); the next client segment, one byte later, is "
         "a whole 'select @@version_comment limit 1' (decoded, with its result set), and the "
         "'paris' query overlaps its last byte; pt parses packets one by one, a reassembler "
         "keeps the first copy, so the 'paris' query's header is broken and the rest of the "
         "client stream (its COM_QUIT too) is not framed",
     .custom = badTcpdump},
    {.project = kPt,
     .file = "converted-pcap/tcpdump-1402776.pcap",
     .ports = {3307},
     .upstream = "tcpdump-1402776",
     .checks = kPtConnect,
     .unanswered = 1},
    {.project = kPt,
     .file = "converted-pcap/tcpdump000.pcap",
     .ports = k3306,
     .upstream = "no upstream test (TSHARK-COUNTS.tsv)",
     .checks = "commands by type equal tshark's",
     .custom = tsharkOnly},
    {kPt, "converted-pcap/tcpdump001.pcap", k3306, "tcpdump001", kPtEvents},
    {kPt, "converted-pcap/tcpdump002.pcap", k3306, "tcpdump002", kPtEvents},
    {kPt, "converted-pcap/tcpdump003.pcap", k3306, "tcpdump003", kPtConnect},
    {kPt, "converted-pcap/tcpdump004.pcap", k3306, "tcpdump004", kPtEvents},
    {kPt, "converted-pcap/tcpdump005.pcap", k3306, "tcpdump005", kPtEvents},
    {kPt, "converted-pcap/tcpdump006.pcap", k3306, "tcpdump006", kPtEvents},
    {kPt, "converted-pcap/tcpdump007.pcap", k3306, "tcpdump007", kPtEvents},
    {.project = kPt,
     .file = "converted-pcap/tcpdump008.pcap",
     .ports = k3306,
     .upstream = "no upstream test (TSHARK-COUNTS.tsv)",
     .checks = "commands by type equal tshark's",
     .custom = tsharkOnly},
    {.project = kPt,
     .file = "converted-pcap/tcpdump009.pcap",
     .ports = k3306,
     .upstream = "no upstream test (TSHARK-COUNTS.tsv)",
     .checks = "no command (tshark: none); the 4.1 login user is decoded",
     .custom = tsharkOnly},
    {.project = kPt,
     .file = "converted-pcap/tcpdump010.pcap",
     .ports = k3306,
     .upstream = "no upstream test (TSHARK-COUNTS.tsv)",
     .checks = "commands by type equal tshark's, except its bogus command 64",
     .differs =
         "tshark decodes the old-password (0xfe) scramble reply as command 64; it is auth data",
     .custom = tsharkOnly},
    {.project = kPt,
     .file = "converted-pcap/tcpdump011.pcap",
     .ports = k3306,
     .upstream = "no upstream test (TSHARK-COUNTS.tsv)",
     .checks = "commands by type equal tshark's",
     .custom = tsharkOnly},
    {kPt, "converted-pcap/tcpdump012.pcap", k3306, "tcpdump012", kPtEvents},
    {.project = kPt,
     .file = "converted-pcap/tcpdump013.pcap",
     .ports = k3306,
     .upstream = "tcpdump013",
     .checks = kPtConnect,
     .unanswered = 1},
    {.project = kPt,
     .file = "converted-pcap/tcpdump014.pcap",
     .ports = k3306,
     .upstream = "tcpdump014",
     .checks = kPtEvents,
     .differs = "the compressed response is cut: 12 of the 633 bytes the client acknowledges were "
                "captured; pt times the first response packet, we report the query as lost",
     .deviations = {{0, Dev::Lost}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump015.pcap",
     .ports = k12345,
     .upstream = "tcpdump015",
     .checks = kPtEvents,
     .differs = "the server bytes before the query's response are missing (a 4203-byte hole learnt "
                "only after the query): a gap before the response makes the query lost, pt reads "
                "the next packet as its answer",
     .deviations = {{1, Dev::Lost}}},
    {kPt, "converted-pcap/tcpdump016.pcap", k3306, "tcpdump016", kPtConnect},
    {.project = kPt,
     .file = "converted-pcap/tcpdump017.pcap",
     .ports = k3306,
     .upstream = "pt-query-digest report tcpdump017_report.txt",
     .checks = "the query, its latency = the report's min (265 us)",
     .differs = "the 4 client packets are one segment retransmitted at 4 times: pt counts 4 "
                "queries, a reassembler 1",
     .custom = tcpdump017},
    {.project = kPt,
     .file = "converted-pcap/tcpdump018.pcap",
     .ports = {12345, 12347},
     .upstream = "tcpdump018 (both cases)",
     .checks = kPtEvents,
     .ports2 = k12345,
     .note = "pt's second case filters on server 10.0.0.1:3306, which the bytes do not name "
             "(127.0.0.1:12345/12347); it keeps the first connection, reproduced by decoding "
             "port 12345 only"},
    {.project = kPt,
     .file = "converted-pcap/tcpdump019.pcap",
     .ports = k12345,
     .upstream = "tcpdump019 (first arg = tcpdump019-arg.txt)",
     .checks = "no false transaction",
     .differs = "mid-stream connection whose first command (18.5 KB) spans two segments: "
                "resynchronisation needs a command that starts and ends in one segment, so it is "
                "skipped (the next command would be decoded)",
     .deviations = {{0, Dev::Absent}}},
    {kPt, "converted-pcap/tcpdump021.pcap", k12345, "tcpdump021", kPtEvents},
    {kPt, "converted-pcap/tcpdump022.pcap", k12345, "tcpdump022", kPtEvents},
    {kPt, "converted-pcap/tcpdump023.pcap", k12345, "tcpdump023", kPtEvents},
    {kPt, "converted-pcap/tcpdump024.pcap", k12345, "tcpdump024", kPtEvents},
    {kPt, "converted-pcap/tcpdump025.pcap", k12345, "tcpdump025", kPtEvents},
    {kPt, "converted-pcap/tcpdump026.pcap", k3306, "tcpdump026", kPtEvents},
    {kPt, "converted-pcap/tcpdump027.pcap", k3306, "tcpdump027", kPtEvents},
    {kPt, "converted-pcap/tcpdump028.pcap", k12345, "tcpdump028", kPtEvents},
    {kPt, "converted-pcap/tcpdump029.pcap", k12345, "tcpdump029", kPtEvents},
    {kPt, "converted-pcap/tcpdump030.pcap", k3306, "tcpdump030", kPtEvents},
    {.project = kPt,
     .file = "converted-pcap/tcpdump031.pcap",
     .ports = k3306,
     .upstream = "tcpdump031",
     .checks = "no false transaction",
     .differs = "anonymised dump: 2.9 KB and 65 KB of the UPDATE were not captured (pt glues the 3 "
                "fragments into \"UPDATEDDDDNNNN\"); bytes known missing, so no transaction",
     .deviations = {{0, Dev::Absent}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump032.pcap",
     .ports = k3306,
     .upstream = "tcpdump032",
     .checks = "no false transaction",
     .differs = "same as tcpdump031 (plus a retransmitted copy a day later)",
     .deviations = {{0, Dev::Absent}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump033.pcap",
     .ports = k12345,
     .upstream = "pt-query-digest report tcpdump033.txt (15 events, 3 unique)",
     .checks =
         "5 prepares, 7 executes (total 975 us, min 119, max 170), 3 closes, 4 prepare latencies",
     .differs =
         "the last server packet is a retransmission of the first response (seq 1:63); pt takes it "
         "as the answer to the 5th PREPARE (247 us), a reassembler drops it: that PREPARE is lost",
     .custom = tcpdump033},
    {kPt, "converted-pcap/tcpdump034.pcap", k3306, "tcpdump034", kPtEvents},
    {.project = kPt,
     .file = "converted-pcap/tcpdump035.pcap",
     .ports = k3306,
     .upstream = "tcpdump035",
     .checks = kPtEvents,
     .differs =
         "hand-edited: the first query and its response were cut out (holes of 37 and 79 bytes); "
         "the server hole is learnt after the next query, whose answer is then taken as lost",
     .deviations = {{1, Dev::Lost}, {4, Dev::Lost}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump036.pcap",
     .ports = k3306,
     .upstream = "tcpdump036",
     .checks = kPtEvents,
     .differs = "same holes as tcpdump035 in the second connection",
     .deviations = {{2, Dev::Lost}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump037.pcap",
     .ports = k3306,
     .upstream = "tcpdump037",
     .checks = kPtEvents,
     .differs = "the query is sent, retransmitted 2 s later, answered 1 s after that: we time from "
                "the first transmission (3 s), pt from the retransmitted copy (1 s)",
     .deviations = {{1, Dev::Latency}}},
    {.project = kPt,
     .file = "converted-pcap/tcpdump038.pcap",
     .ports = k12345,
     .upstream = "tcpdump038 (first arg ends with --THE END--')",
     .checks = "no false transaction",
     .differs = "as tcpdump019 (the 18.5 KB query spans two segments of a mid-stream connection); "
                "the unanswered \"hello world\" before it has no response in the capture",
     .deviations = {{0, Dev::Absent}},
     .unanswered = 1},
    {.project = kPt,
     .file = "converted-pcap/tcpdump039.pcap",
     .ports = {3310},
     .upstream = "TcpdumpParser.t (with its 4-byte VLAN skip)",
     .checks = "nothing decoded, nothing invented",
     .differs =
         "raw-IP link type but each packet starts with a 4-byte 802.1Q remainder (upstream skips "
         "it with an option): not IP, not decodable as captured; see the .vlan-as-ethernet variant",
     .custom = tcpdump039Raw},
    {.project = kPt,
     .file = "converted-pcap/tcpdump039.vlan-as-ethernet.pcap",
     .ports = {3310},
     .upstream = "TcpdumpParser.t: 1 packet, 154 data bytes, the SELECT",
     .checks = "one COM_QUERY of 154 bytes, its SQL, no response in the capture",
     .custom = tcpdump039Vlan},
    {kPt, "converted-pcap/tcpdump040.pcap", k3306, "tcpdump040", kPtEvents},
    {.project = kPt,
     .file = "converted-pcap/tcpdump041.pcap",
     .ports = k12345,
     .upstream = "pt-query-digest report tcpdump041.txt",
     .checks = "1 PREPARE, statement id 2, 286 us",
     .custom = tcpdump041},
    {kPt, "converted-pcap/tcpdump042.pcap", k12345, "tcpdump042", kPtConnect},
    {kPt, "converted-pcap/tcpdump043.pcap", k12345, "tcpdump043", kPtConnect},
    {kPt, "converted-pcap/tcpdump044.pcap", k3306, "tcpdump044", kPtConnect},

    // zeek (BSD-3-Clause): mysql.log baselines.
    {kZeek, "testing/btest/Traces/mysql/auth.pcap", k3306, "scripts.base.protocols.mysql.auth",
     kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/caching_sha2_password-after-auth-switch.pcapng", k3306,
     "scripts.base.protocols.mysql.caching_sha2_password-after-auth-switch", kZeekChecks},
    {.project = kZeek,
     .file = "testing/btest/Traces/mysql/caching_sha2_password.pcap",
     .ports = k3306,
     .upstream = "scripts.base.protocols.mysql.caching_sha2_password",
     .checks = kZeekChecks,
     .differs =
         "field_list arg (table name) not compared: the decoder keeps no text for COM_FIELD_LIST"},
    {kZeek, "testing/btest/Traces/mysql/change-user-error.pcap", k3306,
     "scripts.base.protocols.mysql.change-user-error", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/change-user-success.pcap", k3306,
     "scripts.base.protocols.mysql.change-user-success", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/encrypted.pcap", k3306,
     "scripts.base.protocols.mysql.encrypted",
     "mysql.log empty: no transaction, the connection counted as TLS"},
    {.project = kZeek,
     .file = "testing/btest/Traces/mysql/many-query-attrs.pcap",
     .ports = k3306,
     .upstream = "scripts.base.protocols.mysql.many-query-attr",
     .checks = kZeekChecks,
     .differs =
         "field_list arg (table name) not compared: the decoder keeps no text for COM_FIELD_LIST"},
    {kZeek, "testing/btest/Traces/mysql/mysql-9.0.0-query-attributes.pcap", k3306,
     "scripts.base.protocols.mysql.query-attr-non-string", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/mysql-show-engine-innodb-status-no-password.pcap", k3306,
     "scripts.base.protocols.mysql.show-engine-innodb-status", kZeekChecks},
    {.project = kZeek,
     .file = "testing/btest/Traces/mysql/mysql.pcap",
     .ports = k3306,
     .upstream = "scripts.base.protocols.mysql.wireshark",
     .checks = kZeekChecks,
     .differs =
         "field_list arg (table name) not compared: the decoder keeps no text for COM_FIELD_LIST"},
    {kZeek, "testing/btest/Traces/mysql/mysql8-navicat-login-failed.pcap", k3306,
     "scripts.base.protocols.mysql.caching_sha2_password-auth-switch-to-test-sha256_password",
     kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/plain-amazon-rds.pcap", k3306,
     "scripts.base.protocols.mysql.plain-aws-rds", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/query-attr.pcap", k3306,
     "scripts.base.protocols.mysql.query-attr", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/selects_with_new_proto.pcap", k3306,
     "scripts.base.protocols.mysql.selects_with_new_proto", kZeekChecks},
    {kZeek, "testing/btest/Traces/mysql/tls-12-amazon-rds.pcap", k3306,
     "scripts.base.protocols.mysql.encrypted-aws-rds (no mysql.log)",
     "no mysql.log rows: no transaction, the connection counted as TLS"},
    {kZeek, "testing/btest/Traces/mysql/tls-13-amazon-rds.pcap", k3306,
     "scripts.base.protocols.mysql.encrypted-aws-rds (no mysql.log)",
     "no mysql.log rows: no transaction, the connection counted as TLS"},
    {.project = kZeek,
     .file = "testing/btest/Traces/postgresql/mysql-on-port-5432.pcap",
     .ports = {5432},
     .upstream =
         "scripts.base.protocols.postgresql.mysql-on-port-5432 (+ change-user-success's mysql.log)",
     .checks = "decoded as MySQL on port 5432: the rows of change-user-success's mysql.log",
     .note = "upstream asserts only that Zeek's PostgreSQL analyzer rejects it; it is the "
             "change-user-success session on another port, so that baseline is compared"},

    // deepflow (Apache-2.0): golden .result files and check_perf() totals.
    {.project = kDf,
     .file = "agent/resources/test/flow_generator/mysql/171-mysql.pcap",
     .ports = {20130},
     .upstream = "EXPECTED.md check_perf()",
     .checks = "390 requests, 390 responses, 0 errors, rrt sum 127090 us, max 5355 us",
     .custom = deepflowPerf171},
    {.project = kDf,
     .file = "agent/resources/test/flow_generator/mysql/binary-in-sql.pcap",
     .ports = {2883},
     .upstream = "binary-in-sql.result",
     .checks = kDfChecks,
     .note = "DeepFlow shows the non-UTF-8 byte of the SQL as U+FFFD: compared the same way"},
    {.project = kDf,
     .file = "agent/resources/test/flow_generator/mysql/large-response.pcap",
     .ports = {6033},
     .upstream = "large-response.result",
     .checks = kDfChecks,
     .note = "the golden file cuts every payload to 1024 bytes, so a result set can show as "
             "response code 0: only codes 254 (result set) and 255 (error) name an outcome"},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-compressed-response.pcap",
     {30130},
     "mysql-compressed-response.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-database.pcap",
     {20130},
     "mysql-database.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-error.pcap",
     {20130},
     "mysql-error.result + check_perf()",
     ".result as above; check_perf(): 5 requests, 4 responses, 1 error, rrt sum 292 us, max 146 us "
     "(the login's rrt, not exposed, is the remainder)"},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-exec.pcap",
     {30130},
     "mysql-exec.result",
     kDfChecks},
    {kDf, "agent/resources/test/flow_generator/mysql/mysql-login-error.pcap", k3306,
     "mysql-login-error.result", kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-statement-id.pcap",
     {30130},
     "mysql-statement-id.result",
     kDfChecks},
    {.project = kDf,
     .file = "agent/resources/test/flow_generator/mysql/mysql-statement.pcap",
     .ports = {30130},
     .upstream = "mysql-statement.result",
     .checks = "requests as a multiset (command, SQL) and the statement ids of the executes",
     .differs =
         "7 connections interleave in the golden file, which DeepFlow parses packet by packet "
         "without pairing per connection (it reads a prepare answer as 'affected rows 98'): "
         "responses are not paired; requests at the end with no answer in the capture are lost"},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-alter.pcap",
     {20130},
     "mysql-table-alter.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-create.pcap",
     {20130},
     "mysql-table-create.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-delete.pcap",
     {20130},
     "mysql-table-delete.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-desc.pcap",
     {20130},
     "mysql-table-desc.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-destroy.pcap",
     {20130},
     "mysql-table-destroy.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-insert.pcap",
     {20130},
     "mysql-table-insert.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-select.pcap",
     {20130},
     "mysql-table-select.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql-table-update.pcap",
     {20130},
     "mysql-table-update.result",
     kDfChecks},
    {kDf, "agent/resources/test/flow_generator/mysql/mysql-use.pcap", k3306, "mysql-use.result",
     kDfChecks},
    {kDf,
     "agent/resources/test/flow_generator/mysql/mysql.pcap",
     {20130},
     "mysql.result + check_perf()",
     ".result as above; check_perf(): 7 requests, 6 responses, rrt sum 598 us, max 225 us (the "
     "login's rrt, not exposed, is the remainder)"},
    {kDf,
     "agent/resources/test/flow_generator/mysql/partial-packet-compressed.pcap",
     {30130},
     "partial-packet-compressed.result",
     kDfChecks},
    {.project = kDf,
     .file = "agent/resources/test/flow_generator/mysql/truncate-1024.pcap",
     .ports = {6033},
     .upstream = "truncate-1024.result",
     .checks = kDfChecks,
     .note = "as large-response (1024-byte cut in the golden file)"},

    // packetbeat (Apache-2.0): transaction counts and fields stated by the upstream tests.
    {.project = kPb,
     .file = "tests/pcaps/mysql_affected_rows.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "1 transaction: UPDATE, OK, affected rows 316",
     .custom = pbAffectedRows},
    {.project = kPb,
     .file = "tests/pcaps/mysql_err_database_not_selected.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "1 transaction: SELECT, error 1046, '3D000: No database selected'",
     .custom = pbErrNoDb},
    {.project = kPb,
     .file = "tests/pcaps/mysql_int_string_operations.pcap",
     .ports = {13001},
     .upstream = kPbMd,
     .checks = "157 transactions: 134 SELECT, 10 SHOW, 4 ALTER, 3 SET, 2 CREATE, 1 each "
               "STOP/START/RESET/DROP, all answered",
     .custom = pbIntStringOps},
    {.project = kPb,
     .file = "tests/pcaps/mysql_long.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "1 transaction: select * from test_long, 400 rows",
     .custom = pbLong},
    {.project = kPb,
     .file = "tests/pcaps/mysql_long_result.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "1 transaction: select * from test, 15 rows",
     .custom = pbLongResult},
    {.project = kPb,
     .file = "tests/pcaps/mysql_with_gap.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "1 transaction: select * from test_long, rows > 1, packet loss noted",
     .differs = "a segment of the response is missing: packetbeat reports status OK with a 'packet "
                "loss' note, we report the transaction as lost (with the rows seen before the gap)",
     .custom = pbWithGap},
    {.project = kPb,
     .file = "tests/pcaps/mysql_with_whitespaces.pcap",
     .ports = k3306,
     .upstream = kPbMd,
     .checks = "7 query transactions (pings apart): #0 SET, #2 DROP, #3 CREATE, #5 SELECT with 118 "
               "response bytes, all OK",
     .differs = "the SELECT's path test.test (table name) is not decoded",
     .custom = pbWhitespaces},

    // arkime (Apache-2.0): session documents.
    {.project = "arkime",
     .file = "tests/pcap/mysql-allow.pcap",
     .ports = k3306,
     .upstream = "mysql-allow.test",
     .checks = "mysql.user, mysql.version, login accepted",
     .custom = arkime},
    {.project = "arkime",
     .file = "tests/pcap/mysql-deny.pcap",
     .ports = k3306,
     .upstream = "mysql-deny.test",
     .checks = "mysql.user, mysql.version, login rejected",
     .custom = arkime},
    {.project = "arkime",
     .file = "tests/pcap/mysql-tls.pcap",
     .ports = k3306,
     .upstream = "mysql-tls.test",
     .checks = "mysql.version, protocol tls, no user",
     .custom = arkime},

    // nDPI (LGPL-3.0, from ../shared only): flow classification.
    {.project = "nDPI",
     .file = "tests/cfgs/default/pcap/mysql.pcapng",
     .ports = k3306,
     .upstream = "result/mysql.pcapng.out",
     .checks = "2 MySQL flows (client port), server versions 8.0.36 and 10.6.12; beyond nDPI: "
               "the 8.0.36 flow goes TLS, the MariaDB one logs in as admin and queries",
     .custom = ndpi,
     .note = "EXPECTED.md's prose puts the query on the 8.0.36 flow; the bytes put it on the "
             "MariaDB flow (the 8.0.36 one sends an SSLRequest)"},
};

// ------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------

std::string dataRoot() { return std::string(MP_TEST_SOURCE_DIR) + "/tests/data/third-party"; }
std::string sharedRoot() {
    return std::string(MP_TEST_SOURCE_DIR) + "/../shared/corpus/third-party";
}

/// The folder holding `project`: tests/data (permissive licences) or ../shared; "" if neither.
std::string projectDir(const std::string& project) {
    for (const auto& root : {dataRoot(), sharedRoot()}) {
        if (fs::exists(root + "/" + project + "/EXPECTED.md")) {
            return root + "/" + project;
        }
    }
    return "";
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Poco::Dynamic::Var parseJson(const std::string& text) {
    Poco::JSON::Parser parser;
    return parser.parse(text);
}

Totals decodeRow(const std::string& path, const std::vector<uint16_t>& ports) {
    mp::host::PipelineOptions po;
    po.workers = 1;
    po.inlineWorker = true;
    po.serverPorts = ports;
    mysql::SessionLimits limits;
    limits.maxSql = 1 << 20;  // whole statements: upstream compares them in full
    return mptest::mysql::decode(path, po, limits);
}

bool startsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool endsWith(const std::string& s, const std::string& p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

double seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }
/// Latency to the first response packet (what pt-query-digest and the others time).
double latency(const Transaction& tx) {
    return tx.firstResponseTs == 0 ? 0.0 : seconds(tx.firstResponseTs - tx.requestTs);
}
int64_t latencyUs(const Transaction& tx) {
    return tx.firstResponseTs == 0 ? 0
                                   : static_cast<int64_t>(tx.firstResponseTs - tx.requestTs) / 1000;
}

/// The user and schema of the login: LoginInfo holds the current ones (COM_CHANGE_USER and
/// COM_INIT_DB change them); the first command still carries those of the login.
std::string loginUser(const Connection& c) {
    return c.transactions.empty() ? c.login.user : c.transactions.front().user;
}
std::string loginSchema(const Connection& c) {
    return c.transactions.empty() ? c.login.schema : c.transactions.front().schema;
}

bool answered(const Transaction& tx) {
    return tx.outcome != Outcome::Lost && tx.outcome != Outcome::None;
}

/// Accumulates the checks of one upstream item: real assertions, and whether all held.
struct Item {
    bool ok = true;
    void expect(bool cond, const std::string& what) {
        CHECK_MESSAGE(cond, what);
        ok = ok && cond;
    }
};

/// Our transactions of all connections, in connection order.
std::vector<const Transaction*> allTx(const Totals& t) {
    std::vector<const Transaction*> out;
    for (const auto& c : t.connections) {
        for (const auto& tx : c.transactions) {
            out.push_back(&tx);
        }
    }
    return out;
}

// ------------------------------------------------------------------------------------------
// percona-toolkit: MySQLProtocolParser.t events
// ------------------------------------------------------------------------------------------

struct PtEvent {
    std::string arg;
    bool suffix = false;  // arg is only the end of the SQL
    int port = -1;
    std::optional<double> queryTime;
    std::optional<int64_t> rowsAffected;
    std::optional<int64_t> warnings;
    std::optional<int> errorNo;
    std::optional<std::string> errorMsg;
    std::optional<std::string> user;  // "" for null
    std::optional<std::string> db;
    std::optional<int64_t> threadId;
    std::optional<uint32_t> statementId;
    std::optional<bool> noIndexUsed;
    std::optional<bool> noGoodIndexUsed;
};

std::optional<std::string> optString(const JsonObj& o, const char* key) {
    if (!o->has(key)) {
        return std::nullopt;
    }
    return o->isNull(key) ? std::string() : o->getValue<std::string>(key);
}

PtEvent ptEvent(const JsonObj& e) {
    PtEvent ev;
    ev.arg = e->getValue<std::string>("arg");
    ev.port = e->getValue<int>("port");
    ev.queryTime = e->get("Query_time").convert<double>();
    if (e->has("Rows_affected")) {
        ev.rowsAffected = e->get("Rows_affected").convert<int64_t>();
    }
    if (e->has("Warning_count")) {
        ev.warnings = e->get("Warning_count").convert<int64_t>();
    }
    if (e->has("Error_no")) {
        ev.errorNo = e->get("Error_no").convert<int>();
    }
    ev.errorMsg = optString(e, "Error_msg");
    ev.user = optString(e, "user");
    ev.db = optString(e, "db");
    if (e->has("Thread_id")) {
        ev.threadId = e->get("Thread_id").convert<int64_t>();
    }
    if (e->has("Statement_id")) {
        ev.statementId = e->get("Statement_id").convert<uint32_t>();
    }
    if (e->has("No_index_used")) {
        ev.noIndexUsed = e->getValue<std::string>("No_index_used") == "Yes";
    }
    if (e->has("No_good_index_used")) {
        ev.noGoodIndexUsed = e->getValue<std::string>("No_good_index_used") == "Yes";
    }
    return ev;
}

/// One of our events: a login (pt's "administrator command: Connect") or a transaction.
struct OurEvent {
    const Connection* conn;
    const Transaction* tx;  // null: the login
    bool used = false;
};

std::vector<OurEvent> ourEvents(const Totals& t) {
    std::vector<OurEvent> out;
    for (const auto& c : t.connections) {
        if (!c.login.serverVersion.empty() || c.login.failed) {
            out.push_back({&c, nullptr});
        }
        for (const auto& tx : c.transactions) {
            out.push_back({&c, &tx});
        }
    }
    return out;
}

bool sameRequest(const PtEvent& e, const OurEvent& ev) {
    if (e.port >= 0 && ev.conn->flow.client_port != e.port) {
        return false;
    }
    if (e.arg == "administrator command: Connect") {
        return ev.tx == nullptr;
    }
    if (ev.tx == nullptr) {
        return false;
    }
    const Transaction& tx = *ev.tx;
    uint32_t id = e.statementId.value_or(0);
    if (e.suffix) {
        return tx.command == mysql::kQuery && endsWith(tx.sql, e.arg);
    }
    if (e.arg == "administrator command: Quit") {
        return tx.command == mysql::kQuit;
    }
    if (startsWith(e.arg, "PREPARE ")) {
        return tx.command == mysql::kStmtPrepare && tx.sql == e.arg.substr(8);
    }
    if (startsWith(e.arg, "EXECUTE ")) {
        return tx.command == mysql::kStmtExecute && tx.statementId == id;
    }
    if (startsWith(e.arg, "DEALLOCATE PREPARE ")) {
        return tx.command == mysql::kStmtClose && tx.statementId == std::stoul(e.arg.substr(19));
    }
    if (startsWith(e.arg, "RESET ")) {
        return tx.command == mysql::kStmtReset && tx.statementId == std::stoul(e.arg.substr(6));
    }
    return tx.command == mysql::kQuery && tx.sql == e.arg;
}

/// Compares one matched event; `prepared` maps statement ids to the PREPARE text of the case.
bool compareEvent(const PtEvent& e, const OurEvent& ev, bool latencyDiffers,
                  const std::map<uint32_t, std::string>& prepared) {
    Item it;
    const Connection& c = *ev.conn;
    if (e.threadId && *e.threadId < 4294967296LL) {  // 4294967296: pt did not see the greeting
        it.expect(c.login.connectionId == *e.threadId, "thread id (connection id)");
    }
    if (ev.tx == nullptr) {
        // The login. pt reports the user and db of the handshake response.
        it.expect(loginUser(c) == e.user.value_or(loginUser(c)), "login user " + loginUser(c));
        it.expect(loginSchema(c) == e.db.value_or(loginSchema(c)), "login db " + loginSchema(c));
        if (e.errorNo) {
            it.expect(c.login.failed && c.login.errorCode == *e.errorNo,
                      "login error " + std::to_string(c.login.errorCode));
        } else {
            it.expect(!c.login.failed, "login not failed");
        }
        if (e.errorMsg && !e.errorNo) {
            // "Client closed connection during handshake": a greeting, no login, nothing else.
            it.expect(c.login.user.empty() && c.transactions.empty(),
                      "handshake abandoned by the client");
        }
        return it.ok;
    }
    const Transaction& tx = *ev.tx;
    it.expect(tx.outcome != Outcome::Lost, "not lost");
    if (e.user) {
        it.expect(tx.user == *e.user, "user " + tx.user);
    }
    if (e.db) {
        it.expect(tx.schema == *e.db, "db " + tx.schema);
    }
    if (e.statementId) {
        it.expect(tx.statementId == *e.statementId, "statement id");
    }
    if (tx.command == mysql::kStmtExecute) {
        auto p = prepared.find(tx.statementId);
        if (p != prepared.end()) {
            it.expect(tx.sql == p->second, "execute resolved to its PREPARE text");
        }
    }
    if (e.errorNo) {
        it.expect(tx.outcome == Outcome::Error && tx.errorCode == *e.errorNo,
                  "error " + std::to_string(tx.errorCode));
        if (e.errorMsg) {
            it.expect(tx.errorMessage == *e.errorMsg, "error text " + tx.errorMessage);
        }
    } else {
        it.expect(tx.outcome != Outcome::Error, "no error");
    }
    if (e.rowsAffected) {
        it.expect(static_cast<int64_t>(tx.rowsAffected) == *e.rowsAffected,
                  "rows affected " + std::to_string(tx.rowsAffected));
    }
    if (e.warnings) {
        it.expect(tx.warnings == *e.warnings, "warnings " + std::to_string(tx.warnings));
    }
    if (e.noIndexUsed) {
        it.expect(((tx.statusFlags & 0x20) != 0) == *e.noIndexUsed, "no index used flag");
    }
    if (e.noGoodIndexUsed) {
        it.expect(((tx.statusFlags & 0x10) != 0) == *e.noGoodIndexUsed, "no good index flag");
    }
    if (e.queryTime && !latencyDiffers) {
        it.expect(std::abs(latency(tx) - *e.queryTime) <= 1e-6 + 1e-12,
                  "latency " + std::to_string(latency(tx)) + " s vs Query_time " +
                      std::to_string(*e.queryTime));
    }
    return it.ok;
}

/// One upstream case (a sample parsed with some options) against one decode.
void ptCase(const Row& row, const std::vector<PtEvent>& expected, const Totals& got, Tally& tally,
            bool applyDeviations) {
    std::vector<OurEvent> ours = ourEvents(got);
    std::map<uint32_t, std::string> prepared;
    for (const auto& e : expected) {
        if (startsWith(e.arg, "PREPARE ") && e.statementId) {
            prepared[*e.statementId] = e.arg.substr(8);
        }
    }
    for (size_t i = 0; i < expected.size(); ++i) {
        const PtEvent& e = expected[i];
        CAPTURE(i);
        CAPTURE(e.arg.substr(0, 80));
        std::optional<Dev> dev;
        for (const auto& d : row.deviations) {
            if (applyDeviations && d.event == i) {
                dev = d.kind;
            }
        }
        OurEvent* match = nullptr;
        for (auto& ev : ours) {
            if (!ev.used && sameRequest(e, ev)) {
                match = &ev;
                break;
            }
        }
        ++tally.events;
        if (dev == Dev::Absent) {
            CHECK_MESSAGE(match == nullptr, "documented as not decoded");
            ++tally.differing;
            continue;
        }
        CHECK_MESSAGE(match != nullptr, "no transaction for the upstream event");
        if (match == nullptr) {
            continue;
        }
        match->used = true;
        if (dev == Dev::Lost) {
            CHECK_MESSAGE(match->tx != nullptr, "a transaction");
            CHECK_MESSAGE(match->tx->outcome == Outcome::Lost, "documented as lost");
            ++tally.differing;
            continue;
        }
        bool ok = compareEvent(e, *match, dev == Dev::Latency, prepared);
        if (dev == Dev::Latency) {
            ++tally.differing;
        } else if (ok) {
            ++tally.matched;
        }
    }
    // Whatever else we report is a request whose response is not in the capture: pt-query-digest
    // emits nothing for those.
    int unanswered = 0;
    for (const auto& ev : ours) {
        if (!ev.used) {
            CAPTURE(ev.tx != nullptr ? ev.tx->sql.substr(0, 60) : std::string("(login)"));
            REQUIRE(ev.tx != nullptr);
            CHECK(ev.tx->outcome == Outcome::Lost);
            CHECK(ev.tx->firstResponseTs == 0);
            ++unanswered;
        }
    }
    CHECK(unanswered == (applyDeviations ? row.unanswered : 0));
}

void checkPercona(const Row& row, const std::string& dir, const Totals& got, Tally& tally) {
    static const JsonObj root = [&] {
        return parseJson(slurp(dir + "/" + kPtJson)).extract<JsonObj>();
    }();
    std::string sample = std::string(row.upstream).substr(0, std::string(row.upstream).find(' '));
    JsonArr cases = root->getArray("cases");
    int seen = 0;
    for (size_t k = 0; k < cases->size(); ++k) {
        JsonObj c = cases->getObject(static_cast<unsigned>(k));
        if (!endsWith(c->getValue<std::string>("file"), "/" + sample + ".txt")) {
            continue;
        }
        CAPTURE(c->getValue<std::string>("parser_options"));
        std::vector<PtEvent> expected;
        if (c->has("expected_events")) {
            JsonArr evs = c->getArray("expected_events");
            for (size_t i = 0; i < evs->size(); ++i) {
                expected.push_back(ptEvent(evs->getObject(static_cast<unsigned>(i))));
            }
        } else if (c->has("expected_first_event_arg_file")) {
            PtEvent e;  // tcpdump019: the SQL is in a file of its own
            e.arg = slurp(dir + "/" + c->getValue<std::string>("expected_first_event_arg_file"));
            if (endsWith(e.arg, "\n")) {
                e.arg.pop_back();  // the file's final newline is not part of the SQL
            }
            CHECK(e.arg.size() == c->get("expected_first_event_arg_length").convert<uint64_t>());
            expected.push_back(e);
        } else {
            PtEvent e;  // tcpdump038: "first event arg matches /--THE END--'\)$/"
            e.arg = "--THE END--')";
            e.suffix = true;
            expected.push_back(e);
        }
        if (seen++ == 0) {
            ptCase(row, expected, got, tally, true);
        } else {
            // tcpdump018's second case: pt's server filter keeps the first connection only.
            REQUIRE(!row.ports2.empty());
            Totals filtered = decodeRow(dir + "/" + row.file, row.ports2);
            ptCase(row, expected, filtered, tally, false);
        }
    }
    REQUIRE_MESSAGE(seen > 0, "no upstream case for " << sample);
}

// ------------------------------------------------------------------------------------------
// zeek: mysql.log
// ------------------------------------------------------------------------------------------

struct ZeekRow {
    std::string cmd, arg, success, rows, response;
};

std::vector<ZeekRow> readZeekLog(const std::string& path) {
    std::vector<ZeekRow> out;
    std::istringstream in(slurp(path));
    std::string line;
    std::vector<std::string> fields;
    auto split = [](const std::string& s) {
        std::vector<std::string> v;
        std::string cur;
        std::istringstream ss(s);
        while (std::getline(ss, cur, '\t')) {
            v.push_back(cur);
        }
        return v;
    };
    while (std::getline(in, line)) {
        if (startsWith(line, "#fields")) {
            fields = split(line);
            fields.erase(fields.begin());
            continue;
        }
        if (line.empty() || line[0] == '#') {
            continue;
        }
        std::vector<std::string> v = split(line);
        std::map<std::string, std::string> m;
        for (size_t i = 0; i < fields.size() && i < v.size(); ++i) {
            m[fields[i]] = v[i];
        }
        out.push_back({m["cmd"], m["arg"], m["success"], m["rows"], m["response"]});
    }
    return out;
}

const char* zeekCmd(uint8_t cmd) {
    switch (cmd) {
        case mysql::kQuery:
            return "query";
        case mysql::kInitDb:
            return "init_db";
        case mysql::kFieldList:
            return "field_list";
        case mysql::kPing:
            return "ping";
        case mysql::kQuit:
            return "quit";
        case mysql::kChangeUser:
            return "change_user";
        case mysql::kStatistics:
            return "statistics";
        default:
            return "?";
    }
}

void checkZeek(const Row& row, const std::string& dir, const Totals& got, Tally& tally) {
    std::string base = row.upstream;
    base = base.substr(0, base.find(' '));
    std::string log = dir + "/testing/btest/Baseline/" + base + "/mysql.log";
    if (std::string(row.file).find("postgresql/") != std::string::npos) {
        log = dir +
              "/testing/btest/Baseline/scripts.base.protocols.mysql.change-user-success/mysql.log";
    }
    std::vector<ZeekRow> expected;
    if (fs::exists(log)) {
        expected = readZeekLog(log);
    }
    // Ours, as Zeek logs them: a login row per handshake response seen, then the commands.
    struct Ours {
        std::string cmd;
        const Connection* conn;
        const Transaction* tx;
    };
    std::vector<Ours> ours;
    for (const auto& c : got.connections) {
        if (!c.login.user.empty() && !c.login.tls) {
            ours.push_back({"login", &c, nullptr});
        }
        for (const auto& tx : c.transactions) {
            ours.push_back({zeekCmd(tx.command), &c, &tx});
        }
        if (expected.empty()) {
            CHECK_MESSAGE(c.login.tls, "an encrypted session is counted as TLS");
        }
    }
    REQUIRE(ours.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        const ZeekRow& z = expected[i];
        const Ours& o = ours[i];
        CAPTURE(i);
        CAPTURE(z.cmd + " " + z.arg);
        Item it;
        ++tally.events;
        it.expect(o.cmd == z.cmd, "command " + o.cmd);
        bool differs = false;
        if (o.tx == nullptr) {
            it.expect(loginUser(*o.conn) == z.arg, "login user " + loginUser(*o.conn));
            it.expect(o.conn->login.failed == (z.success == "F"), "login success");
        } else {
            const Transaction& tx = *o.tx;
            std::string arg = z.arg == "(empty)" ? "" : z.arg;
            if (tx.command == mysql::kFieldList) {
                differs = true;  // the table name is not kept
            } else {
                it.expect(tx.sql == arg, "arg " + tx.sql.substr(0, 80));
            }
            if (z.success == "T") {
                it.expect(tx.outcome == Outcome::Ok || tx.outcome == Outcome::ResultSet, "success");
            } else if (z.success == "F") {
                it.expect(tx.outcome == Outcome::Error, "failure");
                it.expect(tx.errorMessage == z.response, "error text " + tx.errorMessage);
            } else {
                it.expect(!answered(tx) || tx.command == mysql::kStatistics, "no OK/ERR logged");
            }
            if (z.rows != "-") {
                it.expect(std::to_string(tx.rowsAffected) == z.rows,
                          "affected rows " + std::to_string(tx.rowsAffected));
            }
        }
        if (!it.ok) {
            continue;
        }
        if (differs) {
            ++tally.differing;
        } else {
            ++tally.matched;
        }
    }
}

// ------------------------------------------------------------------------------------------
// deepflow: golden .result files
// ------------------------------------------------------------------------------------------

/// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes U+FFFD.
std::string lossyUtf8(const std::string& s) {
    std::string out;
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
            continue;
        }
        size_t need = 0;
        unsigned char lo = 0x80;
        unsigned char hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        }
        size_t j = i + 1;
        size_t have = 0;
        while (need > 0 && have < need && j < n) {
            auto d = static_cast<unsigned char>(s[j]);
            if (d < lo || d > hi) {
                break;
            }
            ++j;
            ++have;
            lo = 0x80;
            hi = 0xbf;
        }
        if (need > 0 && have == need) {
            out.append(s, i, j - i);
        } else {
            out += "\xef\xbf\xbd";
        }
        i = need > 0 ? j : i + 1;
    }
    return out;
}

struct DfLine {
    std::string type;  // Request, Response, Session, Other
    int requestType = 0;
    std::optional<std::string> resource;
    int responseCode = 0;
    std::optional<int64_t> affected;
    std::optional<std::string> exception;
    uint32_t statementId = 0;
};

struct DfRequest {
    DfLine req;
    std::vector<DfLine> responses;
};

std::vector<DfRequest> readDeepflow(const std::string& path) {
    std::vector<DfRequest> out;
    std::istringstream in(slurp(path));
    std::string line;
    while (std::getline(in, line)) {
        auto cut = line.rfind(" is_mysql: ");
        REQUIRE(cut != std::string::npos);
        JsonObj o = parseJson(line.substr(0, cut)).extract<JsonObj>();
        DfLine l;
        l.type = o->getValue<std::string>("msg_type");
        l.requestType = o->getValue<int>("request_type");
        l.resource = optString(o, "request_resource");
        l.responseCode = o->getValue<int>("response_code");
        if (o->has("sql_affected_rows")) {
            l.affected = o->getValue<int64_t>("sql_affected_rows");
        }
        l.exception = optString(o, "response_execption");  // sic
        l.statementId = o->getValue<uint32_t>("statement_id");
        if (l.type == "Request" || l.type == "Session") {
            out.push_back({l, {}});
        } else if (l.type == "Response" && !out.empty()) {
            out.back().responses.push_back(l);
        }
    }
    return out;
}

void checkDeepflowOrdered(const std::vector<DfRequest>& expected, const Totals& got, Tally& tally) {
    REQUIRE(got.connections.size() == 1);
    const Connection& c = got.connections.front();
    size_t ti = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
        const DfRequest& r = expected[i];
        CAPTURE(i);
        CAPTURE(r.req.resource.value_or("").substr(0, 80));
        Item it;
        ++tally.events;
        const DfLine* resp = r.responses.empty() ? nullptr : &r.responses.front();
        if (r.req.type == "Request" && r.req.requestType == 0) {
            // "Login username: U[ db: D]"
            std::smatch m;
            std::string res = r.req.resource.value_or("");
            REQUIRE(std::regex_match(res, m, std::regex("Login username: (.*?)(?: db: (.*))?")));
            it.expect(loginUser(c) == m[1].str(), "login user " + loginUser(c));
            it.expect(loginSchema(c) == m[2].str(), "login db " + loginSchema(c));
            bool failed = resp != nullptr && resp->responseCode == 255;
            it.expect(c.login.failed == failed, "login outcome");
        } else {
            REQUIRE(ti < c.transactions.size());
            const Transaction& tx = c.transactions[ti++];
            it.expect(tx.command == r.req.requestType, "command " + std::to_string(tx.command));
            if (r.req.resource &&
                (tx.command == mysql::kQuery || tx.command == mysql::kStmtPrepare ||
                 tx.command == mysql::kInitDb)) {
                it.expect(lossyUtf8(tx.sql) == *r.req.resource, "SQL " + tx.sql.substr(0, 80));
            }
            if (tx.command == mysql::kStmtExecute) {
                it.expect(tx.statementId == r.req.statementId, "executed statement id");
            }
            if (resp == nullptr) {
                it.expect(tx.responseTs == 0, "no response");
            } else {
                it.expect(answered(tx), "answered");
                if (resp->responseCode == 255) {
                    it.expect(tx.outcome == Outcome::Error, "error");
                    it.expect(tx.errorMessage == resp->exception.value_or(""),
                              "error text " + tx.errorMessage);
                } else {
                    it.expect(tx.outcome != Outcome::Error, "no error");
                }
                if (resp->responseCode == 254 && tx.command != mysql::kFieldList) {
                    it.expect(tx.outcome == Outcome::ResultSet, "result set");
                }
                if (resp->affected) {
                    it.expect(static_cast<int64_t>(tx.rowsAffected) == *resp->affected,
                              "affected rows " + std::to_string(tx.rowsAffected));
                }
                if (tx.command == mysql::kStmtPrepare) {
                    it.expect(tx.statementId == resp->statementId, "prepared statement id");
                }
            }
        }
        if (it.ok) {
            ++tally.matched;
        }
    }
    CHECK(ti == c.transactions.size());
}

void checkDeepflowMultiset(const std::vector<DfRequest>& expected, const Totals& got,
                           Tally& tally) {
    std::multiset<std::pair<int, std::string>> want;
    std::set<uint32_t> executed;
    for (const auto& r : expected) {
        want.insert({r.req.requestType, r.req.requestType == mysql::kStmtExecute
                                            ? std::string()
                                            : r.req.resource.value_or("")});
        if (r.req.requestType == mysql::kStmtExecute) {
            executed.insert(r.req.statementId);
        }
    }
    std::multiset<std::pair<int, std::string>> have;
    std::set<uint32_t> ourExecuted;
    for (const Transaction* tx : allTx(got)) {
        bool text = tx->command == mysql::kQuery || tx->command == mysql::kStmtPrepare;
        have.insert({tx->command, text ? tx->sql : std::string()});
        if (tx->command == mysql::kStmtExecute) {
            ourExecuted.insert(tx->statementId);
        }
        if (tx->outcome == Outcome::Lost) {
            CHECK(tx->responseBytes == 0);  // the capture ends before any answer
        }
    }
    tally.events += static_cast<int>(want.size());
    CHECK(have == want);
    CHECK(ourExecuted == executed);
    if (have == want && ourExecuted == executed) {
        tally.matched += static_cast<int>(want.size());
    }
}

/// check_perf(): requests (commands + login), responses, server errors, rrt sum and max (us).
struct Perf {
    int requests, responses, errors;
    int64_t rrtSum, rrtMax;
};

void checkPerf(const Perf& want, const Totals& got, Tally& tally) {
    int requests = 0, responses = 0, errors = 0, logins = 0;
    int64_t sum = 0, max = 0;
    for (const auto& c : got.connections) {
        if (!c.login.user.empty()) {
            ++logins;
            ++requests;
            ++responses;
            errors += c.login.failed ? 1 : 0;
        }
        for (const auto& tx : c.transactions) {
            ++requests;
            if (answered(tx) && tx.responseTs != 0) {
                ++responses;
                sum += latencyUs(tx);
                max = std::max(max, latencyUs(tx));
            }
            errors += tx.outcome == Outcome::Error ? 1 : 0;
        }
    }
    ++tally.events;
    Item it;
    it.expect(requests == want.requests, "requests " + std::to_string(requests));
    it.expect(responses == want.responses, "responses " + std::to_string(responses));
    it.expect(errors == want.errors, "server errors " + std::to_string(errors));
    if (logins == 0) {
        it.expect(sum == want.rrtSum, "rrt sum " + std::to_string(sum));
        it.expect(max == want.rrtMax, "rrt max " + std::to_string(max));
    } else {
        // The login's round trip is DeepFlow's too, but the decoder does not expose it: it is
        // what remains of the sum, and must fit the maximum.
        int64_t login = want.rrtSum - sum;
        it.expect(login > 0, "login rrt " + std::to_string(login));
        it.expect(std::max(max, login) == want.rrtMax, "rrt max " + std::to_string(max));
    }
    if (it.ok) {
        ++tally.matched;
    }
}

void checkDeepflow(const Row& row, const std::string& dir, const Totals& got, Tally& tally) {
    std::string result = dir + "/" + row.file;
    result = result.substr(0, result.size() - 5) + ".result";
    std::vector<DfRequest> expected = readDeepflow(result);
    if (got.connections.size() > 1) {
        checkDeepflowMultiset(expected, got, tally);
    } else {
        checkDeepflowOrdered(expected, got, tally);
    }
    std::string name = fs::path(row.file).filename().string();
    if (name == "mysql.pcap") {
        checkPerf({7, 6, 0, 598, 225}, got, tally);
    } else if (name == "mysql-error.pcap") {
        checkPerf({5, 4, 1, 292, 146}, got, tally);
    }
}

// ------------------------------------------------------------------------------------------
// pcap2mysql-log: transcripts
// ------------------------------------------------------------------------------------------

/// "2021-04-04T17:28:50.53886Z" -> ns since the epoch.
uint64_t rfc3339(const std::string& s) {
    std::tm tm{};
    std::istringstream in(s.substr(0, 19));
    in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
    uint64_t ns = static_cast<uint64_t>(timegm(&tm)) * 1000000000ULL;
    if (s.size() > 20 && s[19] == '.') {
        std::string frac = s.substr(20, s.find('Z') - 20);
        frac.resize(9, '0');
        ns += std::stoull(frac);
    }
    return ns;
}

uint64_t seen(const JsonObj& item) {
    return rfc3339(item->getArray("Seen")->getElement<std::string>(0));
}

void checkP2mConnection(const JsonArr& items, const Connection& c, Tally& tally) {
    const Transaction* cur = nullptr;
    size_t ti = 0;
    std::map<uint32_t, std::string> prepared;  // upstream's statement id -> text
    std::string lastPrepare;
    for (size_t i = 0; !items.isNull() && i < items->size(); ++i) {
        JsonObj item = items->getObject(static_cast<unsigned>(i));
        JsonObj d = item->getObject("Data");
        std::string type = d->getValue<std::string>("Type");
        CAPTURE(i);
        CAPTURE(type);
        Item it;
        ++tally.events;
        if (type == "Greeting") {
            it.expect(c.login.serverVersion == d->getValue<std::string>("Version"), "version");
        } else if (type == "Login") {
            it.expect(c.login.user == d->getValue<std::string>("Username"), "user");
        } else if (cur == nullptr && (type == "OK" || type == "Error")) {
            // The answer to the login (or a refusal before any greeting).
            it.expect(c.login.failed == (type == "Error"), "login outcome");
            if (type == "Error") {
                it.expect(c.login.errorCode == d->get("Code").convert<int>(), "login error");
            }
        } else if (type == "Query" || type == "Prepare" || type == "Execute" ||
                   type == "MYSQL_STMT_CLOSE" || type == "QUIT") {
            REQUIRE(ti < c.transactions.size());
            cur = &c.transactions[ti++];
            // Upstream stamps an item with its last segment: a request that spans segments
            // started before.
            it.expect(cur->requestTs <= seen(item), "request time");
            if (type == "Query") {
                it.expect(cur->command == mysql::kQuery, "COM_QUERY");
                it.expect(cur->sql == d->getValue<std::string>("Query"), "SQL");
            } else if (type == "Prepare") {
                it.expect(cur->command == mysql::kStmtPrepare, "COM_STMT_PREPARE");
                lastPrepare = d->getValue<std::string>("Query");
                it.expect(cur->sql == lastPrepare, "SQL");
            } else if (type == "Execute") {
                it.expect(cur->command == mysql::kStmtExecute, "COM_STMT_EXECUTE");
                auto id = d->get("StatementID").convert<uint32_t>();
                it.expect(cur->statementId == id, "statement id");
                it.expect(cur->sql == prepared[id], "execute resolved to its PREPARE text");
            } else if (type == "MYSQL_STMT_CLOSE") {
                it.expect(cur->command == mysql::kStmtClose, "COM_STMT_CLOSE");
            } else {
                it.expect(cur->command == mysql::kQuit, "COM_QUIT");
            }
        } else {
            // A response item: the first one after the command carries its time.
            REQUIRE(cur != nullptr);
            it.expect(cur->responseTs == seen(item), "end of the response (its last segment)");
            if (type == "PREPARE_OK") {
                auto id = d->get("StatementID").convert<uint32_t>();
                it.expect(cur->outcome == Outcome::Prepared && cur->statementId == id,
                          "prepared, statement id");
                prepared[id] = lastPrepare;
            } else if (type == "OK") {
                it.expect(cur->outcome == Outcome::Ok, "OK");
                it.expect(cur->rowsAffected == d->get("AffectedRows").convert<uint64_t>(),
                          "affected rows");
                it.expect(cur->lastInsertId == d->get("LastInsertID").convert<uint64_t>(),
                          "insert id");
                it.expect(cur->warnings == d->get("WarningCount").convert<int>(), "warnings");
            } else if (type == "Error") {
                it.expect(cur->outcome == Outcome::Error, "ERR");
                it.expect(cur->errorCode == d->get("Code").convert<int>(), "code");
                it.expect(cur->sqlState == d->getValue<std::string>("State"), "SQL state");
                it.expect(cur->errorMessage == d->getValue<std::string>("Message"), "message");
            } else if (type == "SQL results") {
                JsonArr rows = d->getArray("Results");
                it.expect(cur->outcome == Outcome::ResultSet, "result set");
                it.expect(cur->rowsReturned == (rows.isNull() ? 0 : rows->size()), "rows");
            } else {
                FAIL("unknown item type " << type);
            }
        }
        if (it.ok) {
            ++tally.matched;
        }
    }
    CHECK(ti == c.transactions.size());
}

void checkP2m(const Row& row, const std::string& dir, const Totals& got, Tally& tally) {
    std::string file = dir + "/test/captures/" + row.upstream;
    JsonArr conns = parseJson(slurp(file)).extract<JsonArr>();
    std::set<uint16_t> listed;
    for (size_t k = 0; k < conns->size(); ++k) {
        JsonObj conn = conns->getObject(static_cast<unsigned>(k));
        std::string addr = conn->getValue<std::string>("Address");  // "a:p - b:p"
        std::smatch m;
        REQUIRE(std::regex_match(addr, m, std::regex(R"([^ ]*:(\d+) - [^ ]*:(\d+))")));
        auto client = static_cast<uint16_t>(std::stoi(m[1].str()));
        auto server = static_cast<uint16_t>(std::stoi(m[2].str()));
        JsonArr items = conn->getArray("Items");
        CAPTURE(addr);
        if (server != 3306) {
            CHECK((items.isNull() || items->size() == 0));  // not MySQL (HTTPS, the web app)
            continue;
        }
        listed.insert(client);
        const Connection* ours = nullptr;
        for (const auto& c : got.connections) {
            if (c.flow.client_port == client) {
                ours = &c;
            }
        }
        REQUIRE(ours != nullptr);
        checkP2mConnection(items, *ours, tally);
    }
    // Connections upstream does not list carried nothing (SYN/RST only).
    for (const auto& c : got.connections) {
        if (listed.count(c.flow.client_port) == 0) {
            CAPTURE(c.flow.client_port);
            CHECK(c.transactions.empty());
            CHECK(c.login.serverVersion.empty());
            CHECK(c.login.user.empty());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Custom checks
// ------------------------------------------------------------------------------------------

std::map<uint8_t, int> commandCounts(const Totals& t) {
    std::map<uint8_t, int> m;
    for (const Transaction* tx : allTx(t)) {
        ++m[tx->command];
    }
    return m;
}

/// The tshark command histogram of TSHARK-COUNTS.tsv ("1:40 2:43 ...") for a capture.
std::map<uint8_t, int> tsharkCommands(const Row& row) {
    std::istringstream in(slurp(dataRoot() + "/TSHARK-COUNTS.tsv"));
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> cols;
        std::istringstream ss(line);
        std::string c;
        while (std::getline(ss, c, '\t')) {
            cols.push_back(c);
        }
        if (cols.size() >= 9 && cols[0] == row.project && cols[1] == row.file) {
            std::map<uint8_t, int> m;
            std::istringstream hs(cols[8]);
            std::string kv;
            while (hs >> kv) {
                auto colon = kv.find(':');
                m[static_cast<uint8_t>(std::stoi(kv.substr(0, colon)))] =
                    std::stoi(kv.substr(colon + 1));
            }
            return m;
        }
    }
    FAIL("no TSHARK-COUNTS.tsv row for " << row.file);
    return {};
}

void badTcpdump(const Row&, const Totals& got, Tally& tally) {
    // The first client frame lies about its length (malformed, dropped); the query sent next
    // is intact and answered by a result set (bad_tcpdump.txt: '@@version_comment', one row).
    auto txs = allTx(got);
    ++tally.events;
    ++tally.differing;
    REQUIRE(txs.size() == 1);
    CHECK(txs[0]->command == mysql::kQuery);
    CHECK(txs[0]->sql == "select @@version_comment limit 1");
    CHECK(txs[0]->outcome == mysql::Outcome::ResultSet);
    CHECK(txs[0]->rowsReturned == 1);
}

void tsharkOnly(const Row& row, const Totals& got, Tally& tally) {
    std::map<uint8_t, int> want = tsharkCommands(row);
    std::map<uint8_t, int> have = commandCounts(got);
    if (row.differs != nullptr) {
        CHECK(want[64] == 1);  // tcpdump010: the old-password scramble reply
        want.erase(64);
        ++tally.differing;
    }
    tally.events += 1;
    CHECK(have == want);
    if (have == want && row.differs == nullptr) {
        ++tally.matched;
    }
    for (const Transaction* tx : allTx(got)) {
        CHECK(tx->outcome != Outcome::Error);
    }
    if (fs::path(row.file).filename() == "tcpdump009.pcap") {
        REQUIRE(got.connections.size() == 1);
        CHECK(got.connections[0].login.user == "monitor");  // the 4.1 login of tcpdump010
        CHECK(got.connections[0].login.serverVersion == "4.1.22-max-log");
    }
}

void tcpdump017(const Row&, const Totals& got, Tally& tally) {
    auto txs = allTx(got);
    REQUIRE(txs.size() == 1);
    CHECK(txs[0]->sql == "select @@version_comment limit 1");
    CHECK(latencyUs(*txs[0]) == 265);  // the report's "min 265us"
    tally.events += 4;
    tally.matched += 1;
    tally.differing += 3;
}

void tcpdump033(const Row&, const Totals& got, Tally& tally) {
    auto txs = allTx(got);
    std::vector<int64_t> prepares, executes;
    int closes = 0, lost = 0;
    for (const Transaction* tx : txs) {
        if (tx->outcome == Outcome::Lost) {
            ++lost;
            CHECK(tx->command == mysql::kStmtPrepare);
            CHECK(tx->sql == "select * from d.t where name=\"daniel\"");
        } else if (tx->command == mysql::kStmtPrepare) {
            prepares.push_back(latencyUs(*tx));
        } else if (tx->command == mysql::kStmtExecute) {
            executes.push_back(latencyUs(*tx));
            CHECK(tx->outcome == Outcome::ResultSet);
        } else if (tx->command == mysql::kStmtClose) {
            ++closes;
        }
    }
    // Query 1 (EXECUTE): count 7, total 975us, min 119us, max 170us.
    CHECK(executes.size() == 7);
    CHECK(std::accumulate(executes.begin(), executes.end(), int64_t{0}) == 975);
    CHECK(*std::min_element(executes.begin(), executes.end()) == 119);
    CHECK(*std::max_element(executes.begin(), executes.end()) == 170);
    // Query 2 (PREPARE): count 5, total 817us, min 103us, max 247us; the 247us one is lost.
    CHECK(prepares.size() == 4);
    CHECK(lost == 1);
    CHECK(std::accumulate(prepares.begin(), prepares.end(), int64_t{0}) == 817 - 247);
    CHECK(*std::min_element(prepares.begin(), prepares.end()) == 103);
    // Query 3 (DEALLOCATE): count 3.
    CHECK(closes == 3);
    tally.events += 15;
    tally.matched += 14;
    tally.differing += 1;
}

void tcpdump039Raw(const Row&, const Totals& got, Tally& tally) {
    CHECK(got.connections.empty());
    ++tally.events;
    ++tally.differing;
}

void tcpdump039Vlan(const Row&, const Totals& got, Tally& tally) {
    auto txs = allTx(got);
    REQUIRE(txs.size() == 1);
    const Transaction& tx = *txs[0];
    ++tally.events;
    Item it;
    it.expect(got.connections[0].flow.client_port == 36762, "client port");
    it.expect(tx.command == mysql::kQuery, "COM_QUERY");
    it.expect(tx.requestBytes == 154, "154 data bytes");
    it.expect(startsWith(tx.sql, "SELECT course_section_id, "), "SQL start");
    it.expect(endsWith(tx.sql, "course_section_id = '145813'\n"), "SQL end");
    it.expect(tx.outcome == Outcome::Lost, "no response in the capture");
    if (it.ok) {
        ++tally.matched;
    }
}

void tcpdump041(const Row&, const Totals& got, Tally& tally) {
    auto txs = allTx(got);
    REQUIRE(txs.size() == 1);
    ++tally.events;
    Item it;
    it.expect(txs[0]->command == mysql::kStmtPrepare, "PREPARE");
    it.expect(txs[0]->sql == "SELECT i FROM d.t WHERE i=?", "SQL");
    it.expect(txs[0]->statementId == 2, "statement id 2");
    it.expect(latencyUs(*txs[0]) == 286, "286us");
    if (it.ok) {
        ++tally.matched;
    }
}

void deepflowPerf171(const Row&, const Totals& got, Tally& tally) {
    checkPerf({390, 390, 0, 127090, 5355}, got, tally);
    auto counts = commandCounts(got);
    CHECK(counts[mysql::kQuery] == 130);
    CHECK(counts[mysql::kPing] == 260);
}

/// Packetbeat's "method": the first keyword of the query.
std::string method(const std::string& sql) {
    std::istringstream in(sql);
    std::string w;
    in >> w;
    std::transform(w.begin(), w.end(), w.begin(),
                   [](unsigned char ch) { return std::toupper(ch); });
    return w;
}

std::vector<const Transaction*> queries(const Totals& got) {
    std::vector<const Transaction*> out;
    for (const Transaction* tx : allTx(got)) {
        if (tx->command == mysql::kQuery) {
            out.push_back(tx);
        }
    }
    return out;
}

void pbAffectedRows(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 1);
    ++tally.events;
    Item it;
    it.expect(method(q[0]->sql) == "UPDATE" && q[0]->sql == "update test set c=\"\"", "UPDATE");
    it.expect(q[0]->outcome == Outcome::Ok, "OK");
    it.expect(q[0]->rowsAffected == 316, "affected_rows 316");
    tally.matched += it.ok ? 1 : 0;
}

void pbErrNoDb(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 1);
    ++tally.events;
    Item it;
    it.expect(method(q[0]->sql) == "SELECT" && q[0]->sql == "select * from test", "SELECT");
    it.expect(q[0]->outcome == Outcome::Error && q[0]->errorCode == 1046, "error 1046");
    it.expect(q[0]->sqlState + ": " + q[0]->errorMessage == "3D000: No database selected",
              "error message");
    tally.matched += it.ok ? 1 : 0;
}

void pbIntStringOps(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    std::map<std::string, int> methods;
    for (const Transaction* tx : q) {
        ++methods[method(tx->sql)];
        CHECK(answered(*tx));
    }
    std::map<std::string, int> want{{"SELECT", 134}, {"SHOW", 10},  {"ALTER", 4},
                                    {"SET", 3},      {"CREATE", 2}, {"STOP", 1},
                                    {"START", 1},    {"RESET", 1},  {"DROP", 1}};
    tally.events += 157;
    CHECK(q.size() == 157);
    CHECK(methods == want);
    if (q.size() == 157 && methods == want) {
        tally.matched += 157;
    }
}

void pbLong(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 1);
    ++tally.events;
    Item it;
    it.expect(q[0]->sql == "select * from test_long", "SQL");
    it.expect(q[0]->outcome == Outcome::ResultSet && q[0]->rowsReturned == 400, "num_rows 400");
    tally.matched += it.ok ? 1 : 0;
}

void pbLongResult(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 1);
    ++tally.events;
    Item it;
    it.expect(q[0]->sql == "select * from test", "SQL");
    it.expect(q[0]->outcome == Outcome::ResultSet && q[0]->rowsReturned == 15, "num_rows 15");
    tally.matched += it.ok ? 1 : 0;
}

void pbWithGap(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 1);
    CHECK(q[0]->sql == "select * from test_long");
    CHECK(q[0]->rowsReturned > 1);
    CHECK(q[0]->outcome == Outcome::Lost);  // packetbeat: OK + "Packet loss" note
    ++tally.events;
    ++tally.differing;
}

void pbWhitespaces(const Row&, const Totals& got, Tally& tally) {
    auto q = queries(got);
    REQUIRE(q.size() == 7);
    tally.events += 7;
    Item it;
    it.expect(method(q[0]->sql) == "SET", "#0 SET");
    it.expect(method(q[2]->sql) == "DROP", "#2 DROP");
    it.expect(method(q[3]->sql) == "CREATE", "#3 CREATE");
    it.expect(method(q[5]->sql) == "SELECT", "#5 SELECT");
    it.expect(q[5]->responseBytes == 118, "#5 bytes_out 118");
    for (const Transaction* tx : q) {
        it.expect(tx->outcome == Outcome::Ok || tx->outcome == Outcome::ResultSet, "status OK");
    }
    CHECK(commandCounts(got)[mysql::kPing] == 5);  // not transactions for packetbeat
    if (it.ok) {
        tally.matched += 6;
        tally.differing += 1;  // #5's path (table name)
    }
}

void arkime(const Row& row, const Totals& got, Tally& tally) {
    std::string test = projectDir("arkime") + "/tests/pcap/" + row.upstream;
    JsonObj body = parseJson(slurp(test))
                       .extract<JsonObj>()
                       ->getArray("sessions3")
                       ->getObject(0)
                       ->getObject("body");
    JsonObj m = body->getObject("mysql");
    JsonArr protocols = body->getArray("protocol");
    bool tls = false;
    for (size_t i = 0; i < protocols->size(); ++i) {
        tls = tls || protocols->getElement<std::string>(static_cast<unsigned>(i)) == "tls";
    }
    REQUIRE(got.connections.size() == 1);
    const Connection& c = got.connections[0];
    ++tally.events;
    Item it;
    it.expect(c.flow.client_port == body->getObject("source")->getValue<int>("port"),
              "client port");
    it.expect(c.login.serverVersion == m->getValue<std::string>("version"), "mysql.version");
    it.expect(c.login.user == (m->has("user") ? m->getValue<std::string>("user") : ""),
              "mysql.user");
    it.expect(c.login.tls == tls, "tls");
    bool deny = std::string(row.file).find("deny") != std::string::npos;
    it.expect(c.login.failed == deny, "login outcome");
    tally.matched += it.ok ? 1 : 0;
}

void ndpi(const Row&, const Totals& got, Tally& tally) {
    std::string out = slurp(projectDir("nDPI") + "/tests/cfgs/default/result/mysql.pcapng.out");
    std::regex flow(
        R"(TCP [\d.]+:(\d+) <-> [\d.]+:3306 \[proto: [\d.]+/MySQL\].*\[PLAIN TEXT \(([^)]*)\)\])");
    int flows = 0;
    for (auto i = std::sregex_iterator(out.begin(), out.end(), flow); i != std::sregex_iterator();
         ++i) {
        ++flows;
        ++tally.events;
        auto port = static_cast<uint16_t>(std::stoi((*i)[1].str()));
        std::string version = (*i)[2].str();
        CAPTURE(version);
        const Connection* c = nullptr;
        for (const auto& conn : got.connections) {
            if (conn.flow.client_port == port) {
                c = &conn;
            }
        }
        REQUIRE(c != nullptr);
        Item it;
        it.expect(c->login.serverVersion.find(version) != std::string::npos, "server version");
        tally.matched += it.ok ? 1 : 0;
    }
    CHECK(flows == 2);
    CHECK(got.connections.size() == 2);
    // Beyond nDPI: the 8.0.36 flow goes TLS, the MariaDB one logs in as admin and queries.
    for (const auto& c : got.connections) {
        bool maria = c.login.serverVersion.find("MariaDB") != std::string::npos;
        CHECK(c.login.tls == !maria);
        if (maria) {
            CHECK(c.login.user == "admin");
            REQUIRE(c.transactions.size() == 2);
            CHECK(c.transactions[0].sql == "select @@version_comment limit 1");
            CHECK(c.transactions[1].command == mysql::kQuit);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Driver
// ------------------------------------------------------------------------------------------

void runProject(const std::string& project) {
    std::string dir = projectDir(project);
    if (dir.empty()) {
        MESSAGE("skipped " << project << ": its GPL/LGPL captures are not vendored in "
                           << "tests/data and are read from " << sharedRoot()
                           << ", which is absent");
        return;
    }
    Tally tally;
    int rows = 0;
    for (const Row& row : kTable) {
        if (row.project != project) {
            continue;
        }
        ++rows;
        std::string file = row.file;
        CAPTURE(file);
        std::string path = dir + "/" + row.file;
        REQUIRE_MESSAGE(fs::exists(path), "missing capture " << path);
        Totals got = decodeRow(path, row.ports);
        ++tally.captures;
        if (row.custom != nullptr) {
            row.custom(row, got, tally);
        } else if (project == kPt) {
            checkPercona(row, dir, got, tally);
        } else if (project == kZeek) {
            checkZeek(row, dir, got, tally);
        } else if (project == kDf) {
            checkDeepflow(row, dir, got, tally);
        } else if (project == kP2m) {
            checkP2m(row, dir, got, tally);
        } else {
            FAIL("no check for " << project);
        }
    }
    REQUIRE(rows > 0);
    MESSAGE(project << ": " << tally.captures << " captures, " << tally.events
                    << " upstream items compared, " << tally.matched << " equal, "
                    << tally.differing << " differ as documented in the table");
    CHECK(tally.matched + tally.differing == tally.events);
}

}  // namespace

TEST_SUITE("decoder-mysql third-party corpus") {
    TEST_CASE("the table has one row per capture of TSHARK-COUNTS.tsv") {
        std::istringstream in(slurp(dataRoot() + "/TSHARK-COUNTS.tsv"));
        std::string line;
        std::getline(in, line);  // header
        std::set<std::pair<std::string, std::string>> listed;
        while (std::getline(in, line)) {
            std::istringstream ss(line);
            std::string project, file;
            std::getline(ss, project, '\t');
            std::getline(ss, file, '\t');
            listed.insert({project, file});
        }
        std::set<std::pair<std::string, std::string>> table;
        for (const Row& row : kTable) {
            CHECK_MESSAGE(table.insert({row.project, row.file}).second, "twice: " << row.file);
            CHECK(row.checks != nullptr);
            CHECK(!row.ports.empty());
        }
        CHECK(table == listed);
        CHECK(table.size() == 109);
    }
    TEST_CASE("pcap2mysql-log: transcripts (.expected)") { runProject(kP2m); }
    TEST_CASE("percona-toolkit: pt-query-digest parser events") { runProject(kPt); }
    TEST_CASE("zeek: mysql.log baselines") { runProject(kZeek); }
    TEST_CASE("deepflow: golden .result files and perf totals") { runProject(kDf); }
    TEST_CASE("packetbeat: transactions") { runProject(kPb); }
    TEST_CASE("arkime: session fields") { runProject("arkime"); }
    TEST_CASE("nDPI: flow classification") { runProject("nDPI"); }
}
