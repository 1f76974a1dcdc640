// SPDX-License-Identifier: Apache-2.0
#include "window.hpp"

namespace mp::binlog {
namespace {

// `over` laid on `base`: each column `over` holds replaces base's (partial row images).
void overlay(Image& base, const Image& over) {
    if (base.end.empty()) {
        base = over;
        return;
    }
    Image out;
    for (size_t i = 0; i < base.end.size(); ++i) {
        std::string_view v =
            i < over.end.size() && !over.value(i).empty() ? over.value(i) : base.value(i);
        out.text.append(v);
        out.end.push_back(static_cast<uint32_t>(out.text.size()));
    }
    base = std::move(out);
}

// Columns the base lacks taken from `more` (an earlier before image completed by a later one).
void complete(Image& base, const Image& more) {
    bool missing = false;
    for (size_t i = 0; i < base.end.size(); ++i) {
        missing = missing || base.value(i).empty();
    }
    if (!missing) {
        return;
    }
    Image out;
    for (size_t i = 0; i < base.end.size(); ++i) {
        std::string_view v =
            !base.value(i).empty() || i >= more.end.size() ? base.value(i) : more.value(i);
        out.text.append(v);
        out.end.push_back(static_cast<uint32_t>(out.text.size()));
    }
    base = std::move(out);
}

// The columns an update changes: present after, and different before (or absent before).
void touch(std::vector<bool>& touched, const Image& before, const Image& after) {
    touched.resize(after.end.size(), false);
    for (size_t i = 0; i < after.end.size(); ++i) {
        if (!after.value(i).empty() &&
            (i >= before.end.size() || before.value(i) != after.value(i))) {
            touched[i] = true;
        }
    }
}

}  // namespace

std::string Window::identity(const TableMap& t, const Image& img) {
    std::string k = t.schema;
    k += '\0';
    k += t.table;
    for (size_t i = 0; i < t.columns.size() && i < img.end.size(); ++i) {
        if (t.columns[i].key) {
            k += '\0';
            k += img.value(i);
        }
    }
    return k;
}

void Window::add(const EventHeader& h, const std::shared_ptr<const TableMap>& t, RowKind kind,
                 const Image& before, const Image& after, const Position& pos, std::string id) {
    bool keyChanged = false;
    if (kind == RowKind::Update) {
        for (size_t i = 0; i < t->columns.size() && i < before.end.size() && i < after.end.size();
             ++i) {
            keyChanged = keyChanged || (t->columns[i].key && !after.value(i).empty() &&
                                        before.value(i) != after.value(i));
        }
    }
    if (keyChanged) {
        byRow_.erase(identity(*t, before));  // the chain of the old key ends here
    } else if (kind != RowKind::Insert) {
        auto it = byRow_.find(identity(*t, before));
        if (it != byRow_.end() && it->second->table->columns.size() == t->columns.size()) {
            Change& c = *it->second;
            const size_t was = c.bytes();
            byRow_.erase(it);
            ++stats_.merged;
            ++c.parts;
            c.lastId = std::move(id);
            if (kind == RowKind::Delete) {
                if (c.kind == RowKind::Insert) {
                    c.before = std::move(c.after);  // the row as it is now, as the consumer has it
                } else {
                    complete(c.before, before);
                }
                c.kind = RowKind::Delete;
                c.after.clear();
                c.touched.clear();
            } else {
                if (c.kind == RowKind::Update) {
                    complete(c.before, before);
                    touch(c.touched, before, after);
                }
                overlay(c.after, after);
                byRow_[identity(*t, c.after)] = &c;
            }
            bytes_ = bytes_ - was + c.bytes();
            return;
        }
    }
    auto c = std::make_unique<Change>();
    c->header = h;
    c->table = t;
    c->kind = kind;
    c->before = before;
    c->after = after;
    c->position = pos;
    c->id = std::move(id);
    c->eventS = h.timestamp;
    c->order = next_++;
    if (kind == RowKind::Update) {
        touch(c->touched, before, after);
    }
    if (kind != RowKind::Delete && !keyChanged) {
        byRow_[identity(*t, after)] = c.get();
    }
    bytes_ += c->bytes();
    queue_.push_back(std::move(c));
    while (bytes_ > maxBytes_ && !queue_.empty()) {
        ++stats_.early;
        send(*queue_.front());
        queue_.pop_front();
    }
}

void Window::send(Change& c) {
    if (c.gone) {
        return;
    }
    bytes_ -= c.bytes();
    if (c.kind != RowKind::Delete) {
        auto it = byRow_.find(identity(*c.table, c.after));
        if (it != byRow_.end() && it->second == &c) {
            byRow_.erase(it);
        }
    }
    emit_(c);
}

void Window::flush(uint64_t nowS, bool all) {
    while (!queue_.empty() && (all || queue_.front()->eventS + delayS_ <= nowS)) {
        send(*queue_.front());
        queue_.pop_front();
    }
}

uint64_t Window::oldestWaiting() const {
    for (const auto& c : queue_) {
        if (!c->gone) {
            return c->order;
        }
    }
    return next_;
}

}  // namespace mp::binlog
