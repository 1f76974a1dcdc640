// SPDX-License-Identifier: Apache-2.0
// Test support for tests that run a mysqlprobe node: configs in fresh directories, the port it
// logged, plain HTTP GETs and JSON parsing (Poco).
#pragma once

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

#include <regex>
#include <string>

#include "support/process.hpp"

namespace mptest {

/// A file of tests/data.
inline std::string data(const std::string& rel) { return sourceDir() + "/tests/data/" + rel; }

/// Writes a config into a fresh directory and returns its path.
inline std::string config(const std::string& name, const std::string& yaml) {
    std::string dir = tempDir(name);
    std::string path = dir + "/probe.yaml";
    writeFile(path, yaml);
    return path;
}

/// The port the host logged ("serving HTTP on 127.0.0.1:PORT"), or 0.
inline int loggedPort(const Process& p) {
    std::smatch m;
    std::string err = p.err();
    static const std::regex re("serving HTTP on [0-9.]+:([0-9]+)");
    return std::regex_search(err, m, re) ? std::stoi(m[1]) : 0;
}

/// GET (or another method) of `uri` on 127.0.0.1:port; the status, the body in `body`.
inline int httpGet(int port, const std::string& uri, std::string& body,
                   const std::string& method = "GET") {
    Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port));
    s.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest req(method, uri, Poco::Net::HTTPMessage::HTTP_1_1);
    s.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::istream& in = s.receiveResponse(resp);
    body.clear();
    Poco::StreamCopier::copyToString(in, body);
    return resp.getStatus();
}

inline Poco::JSON::Object::Ptr parseJson(const std::string& text) {
    Poco::JSON::Parser p;
    return p.parse(text).extract<Poco::JSON::Object::Ptr>();
}

}  // namespace mptest
