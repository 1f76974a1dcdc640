// SPDX-License-Identifier: Apache-2.0
// report-push: sends native JSON reports (files, one report each, of one node's run in seq
// order) to a master's /cluster/push with the SDK's pusher, as a slave does, and waits until
// every one is acknowledged.
//   MP_TOKEN_FILE=FILE report-push HOST:PORT A.json [B.json ...]
#include <mp/abi.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <sstream>
#include <string>
#include <thread>

namespace {

bool readFile(const char* path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return false;
    }
    std::ostringstream s;
    s << in.rdbuf();
    out = s.str();
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: MP_TOKEN_FILE=FILE report-push HOST:PORT REPORT.json [...]\n";
        return 2;
    }
    mp::push::PusherOptions o;
    o.servers = {argv[1]};
    o.path = "/cluster/push";
    o.ack = mp::push::AckMode::Message;  // the master answers {"ack":SEQ} once merged
    if (const char* f = std::getenv("MP_TOKEN_FILE"); f != nullptr && *f != '\0') {
        std::string token;
        if (!readFile(f, token)) {
            std::cerr << "cannot read the token file " << f << "\n";
            return 2;
        }
        token = token.substr(0, token.find_first_of("\r\n"));  // its first line
        o.authorization = "Bearer " + token;
    }
    mp::push::Pusher pusher(
        o, [](int, const std::string& line) { std::cerr << "push: " << line << "\n"; },
        [](const mp::push::PusherStats&) {});
    size_t count = 0;
    for (int i = 2; i < argc; ++i) {
        std::string json;
        mp::report::Identity id;
        if (!readFile(argv[i], json) || !mp::report::reportIdentity(json, id)) {
            std::cerr << argv[i] << ": not a readable report (node, started_ns, seq)\n";
            return 2;
        }
        pusher.push(id.seq, mp::push::Encoded{MP_WS_TEXT, std::move(json)});
        ++count;
    }
    pusher.start();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (pusher.stats().acked < count && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    mp::push::PusherStats st = pusher.stats();
    pusher.stop();
    std::cout << "pushed " << count << " report(s), acknowledged " << st.acked << "\n";
    return st.acked >= count ? 0 : 1;
}
