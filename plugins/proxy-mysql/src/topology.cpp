// SPDX-License-Identifier: Apache-2.0
#include "topology.hpp"

#include <Poco/JSON/Parser.h>
#include <Poco/Net/IPAddress.h>

namespace mp::proxy {

std::string Target::key() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
}

namespace {
bool role(const Poco::JSON::Object::Ptr& root, const char* name, std::vector<Target>& out,
          std::string& why) {
    if (!root->has(name)) {
        return true;  // absent: none
    }
    auto obj = root->getObject(name);
    if (!obj) {
        why = std::string(name) + " is not an object";
        return false;
    }
    if (!obj->has("containers")) {
        return true;
    }
    auto list = obj->getArray("containers");
    if (!list) {
        why = std::string(name) + ".containers is not an array";
        return false;
    }
    if (list->size() > 1000) {
        why = std::string(name) + ": more than 1000 containers";
        return false;
    }
    for (size_t i = 0; i < list->size(); ++i) {
        auto c = list->getObject(static_cast<unsigned>(i));
        if (!c || !c->has("container_ip") || !c->has("container_port")) {
            why = std::string(name) + ": a container without container_ip and container_port";
            return false;
        }
        auto ip = c->get("container_ip");
        auto port = c->get("container_port");
        if (!ip.isString() || !port.isInteger()) {
            why = std::string(name) + ": container_ip is a string, container_port a number";
            return false;
        }
        Target t;
        t.host = ip.extract<std::string>();
        Poco::Net::IPAddress parsed;
        if (!Poco::Net::IPAddress::tryParse(t.host, parsed)) {
            why = std::string(name) + ": '" + t.host.substr(0, 64) + "' is not an IP address";
            return false;
        }
        const auto p = port.convert<int64_t>();
        if (p < 1 || p > 65535) {
            why = std::string(name) + ": port " + std::to_string(p) + " out of 1..65535";
            return false;
        }
        t.port = static_cast<uint16_t>(p);
        out.push_back(std::move(t));
    }
    return true;
}
}  // namespace

std::optional<Topology> parseTopology(std::string_view json, std::string* why) {
    std::string reason;
    try {
        Poco::JSON::Parser parser;
        auto v = parser.parse(std::string(json));
        auto root = v.extract<Poco::JSON::Object::Ptr>();
        Topology t;
        if (root && role(root, "master", t.master, reason) &&
            role(root, "slave", t.slave, reason)) {
            return t;
        }
        if (!root) {
            reason = "not an object";
        }
    } catch (const std::exception& e) {
        reason = std::string("not JSON: ") + e.what();
    }
    if (why != nullptr) {
        *why = reason;
    }
    return std::nullopt;
}

void SseParser::feed(std::string_view bytes) {
    size_t pos = 0;
    while (pos < bytes.size()) {
        if (lastCr_ && bytes[pos] == '\n') {  // the LF of a CRLF
            lastCr_ = false;
            ++pos;
            continue;
        }
        lastCr_ = false;
        size_t end = bytes.find_first_of("\r\n", pos);
        std::string_view piece =
            bytes.substr(pos, end == std::string_view::npos ? bytes.size() - pos : end - pos);
        if (line_.size() + piece.size() > maxLine_) {
            throw SseError("an event stream line longer than " + std::to_string(maxLine_) +
                           " bytes");
        }
        if (end == std::string_view::npos) {
            line_.append(piece);
            return;
        }
        lastCr_ = bytes[end] == '\r';
        if (line_.empty()) {
            line(piece);
        } else {
            line_.append(piece);
            std::string whole;
            whole.swap(line_);
            line(whole);
        }
        pos = end + 1;
    }
}

void SseParser::line(std::string_view l) {
    if (l.empty()) {
        if (hasData_) {
            handler_(event_.empty() ? std::string("message") : event_, data_);
        }
        event_.clear();
        data_.clear();
        hasData_ = false;
        return;
    }
    if (l.front() == ':') {
        return;  // a comment: keepalive
    }
    const size_t colon = l.find(':');
    const std::string_view field = l.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
    }
    if (field == "event") {
        event_.assign(value.substr(0, 256));
    } else if (field == "data") {
        if (data_.size() + value.size() + 1 > maxEvent_) {
            throw SseError("an event larger than " + std::to_string(maxEvent_) + " bytes");
        }
        if (hasData_) {
            data_ += '\n';
        }
        data_.append(value);
        hasData_ = true;
    }
}

}  // namespace mp::proxy
