// SPDX-License-Identifier: Apache-2.0
// report-merge: merges native JSON reports (files, one report each) the way a master does:
// counts add, latency sketches merge exactly. The first file is "own", the others are merged
// into it; the merged report goes to standard output.
//   report-merge A.json B.json [C.json ...]
#include <fstream>
#include <iostream>
#include <mp/report_merge.hpp>
#include <sstream>
#include <string>
#include <vector>

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
        std::cerr << "usage: report-merge OWN.json OTHER.json [...]\n";
        return 2;
    }
    std::string own;
    if (!readFile(argv[1], own)) {
        std::cerr << "cannot read " << argv[1] << "\n";
        return 2;
    }
    std::vector<mp::report::Incoming> in;
    for (int i = 2; i < argc; ++i) {
        mp::report::Incoming r;
        if (!readFile(argv[i], r.json)) {
            std::cerr << "cannot read " << argv[i] << "\n";
            return 2;
        }
        mp::report::Identity id;
        if (!mp::report::reportIdentity(r.json, id)) {
            std::cerr << argv[i] << " is not a mysqlprobe report\n";
            return 2;
        }
        r.addr = argv[i];
        r.node = id.node;
        r.started = id.started;
        r.seq = id.seq;
        in.push_back(std::move(r));
    }
    mp::report::MergeResult m = mp::report::mergeReports(own, in, {}, 10000);
    std::cout << m.json << "\n";
    std::cerr << "merged " << m.merged << " reports, rejected " << m.rejected << "\n";
    return m.rejected == 0 ? 0 : 1;
}
