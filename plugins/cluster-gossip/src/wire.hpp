// SPDX-License-Identifier: Apache-2.0
// HashiCorp memberlist's wire format (protocol 2..5, as spoken by memberlist 0.2.x and the serf
// agent Debian ships), and the few serf messages a member must understand. Pure functions: no
// sockets, no clocks; every decoder takes untrusted bytes, never throws and never reads out of
// bounds. The format itself is described in docs/gossip-wire.md.
//
//  - messages are one type byte and a msgpack map keyed by the Go field names ("SeqNo"...);
//    byte fields (Addr, Meta, Vsn, Payload) are written as msgpack str, read as str or bin
//  - UDP: [encrypt] [hasCrc] [compress] [compound] messages; TCP: [0x0a encrypt] [compress]
//    then one message whose msgpack objects follow each other without length prefixes
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mp::gossip {

using Bytes = std::vector<uint8_t>;

enum class MsgType : uint8_t {
    Ping = 0,
    IndirectPing = 1,
    Ack = 2,
    Suspect = 3,
    Alive = 4,
    Dead = 5,
    PushPull = 6,
    Compound = 7,
    User = 8,
    Compress = 9,
    Encrypt = 10,
    Nack = 11,
    HasCrc = 12,
    Err = 13,
};

/// memberlist node states as sent in push-pull.
enum class State : uint8_t { Alive = 0, Suspect = 1, Dead = 2, Left = 3 };

/// Protocol versions a member advertises: pmin, pmax, pcur, dmin, dmax, dcur (what serf 0.9.4
/// sends and accepts).
inline const Bytes kVsn = {1, 5, 2, 2, 5, 5};

struct Ping {
    uint32_t seqNo = 0;
    std::string node;  // the target's name ("" is accepted by everyone)
    Bytes sourceAddr;  // optional: where the ack goes (4 or 16 bytes)
    uint16_t sourcePort = 0;
    std::string sourceNode;
};
struct IndirectPing {
    uint32_t seqNo = 0;
    Bytes target;  // 4 or 16 bytes
    uint16_t port = 0;
    std::string node;
    bool nack = false;
    Bytes sourceAddr;
    uint16_t sourcePort = 0;
    std::string sourceNode;
};
struct Ack {
    uint32_t seqNo = 0;
    Bytes payload;
};
struct Nack {
    uint32_t seqNo = 0;
};
struct Alive {
    uint32_t incarnation = 0;
    std::string node;
    Bytes addr;
    uint16_t port = 0;
    Bytes meta;
    Bytes vsn;  // 6 bytes; anything else is refused by decode()
};
struct Suspect {
    uint32_t incarnation = 0;
    std::string node;
    std::string from;
};
struct Dead {
    uint32_t incarnation = 0;
    std::string node;
    std::string from;  // == node: the member left
};
struct PushNodeState {
    std::string name;
    Bytes addr;
    uint16_t port = 0;
    Bytes meta;
    uint32_t incarnation = 0;
    State state = State::Alive;
    Bytes vsn;  // 6 bytes
};
struct PushPull {
    bool join = false;
    std::vector<PushNodeState> nodes;
    Bytes userState;  // serf: 0x02 + its push-pull state; may be empty
};
struct ErrResp {
    std::string error;
};

/// Bounds on what a member may announce, as memberlist has them: node meta at most its
/// MetaMaxSize (512 bytes; serf's tags live there), and names (a member's name, the `From` of
/// an accusation) at most 256 bytes (a DNS name has at most 253; serf's name check allows 128).
/// Decoders accept longer fields (the format has no limit); members refuse them (withinLimits).
constexpr size_t kMetaMaxSize = 512;
constexpr size_t kNameMaxSize = 256;
bool withinLimits(const Alive& m);
bool withinLimits(const PushNodeState& m);
bool withinLimits(const Suspect& m);
bool withinLimits(const Dead& m);
/// Why a member cannot be dialled at `addr` ("" when it can): members speak IPv4 (4 bytes), and
/// 0.0.0.0/8 (unspecified), 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, with the
/// broadcast address 255.255.255.255) are nobody's address.
std::string unusableAddress(const Bytes& addr);
/// The same for a dotted quad; "not an IPv4 address" when it is not one.
std::string unusableAddress(const std::string& ip);

// Encoders: the whole message, type byte first.
Bytes encode(const Ping& m);
Bytes encode(const IndirectPing& m);
Bytes encode(const Ack& m);
Bytes encode(const Nack& m);
Bytes encode(const Alive& m);
Bytes encode(const Suspect& m);
Bytes encode(const Dead& m);
Bytes encode(const PushPull& m);
Bytes encode(const ErrResp& m);
/// A user message (type 8) carrying `payload` as is (UDP form).
Bytes encodeUser(const Bytes& payload);
/// The stream (TCP) form of a user message: 0x08 + {UserMsgLen} + payload.
Bytes encodeUserStream(const Bytes& payload);

// Decoders of a message body (the bytes after the type byte). False on anything malformed,
// truncated, of the wrong msgpack type, or out of range (Vsn must have 6 bytes, addresses 4 or
// 16). Unknown map keys are skipped, as Go does.
bool decode(const uint8_t* p, size_t n, Ping& out);
bool decode(const uint8_t* p, size_t n, IndirectPing& out);
bool decode(const uint8_t* p, size_t n, Ack& out);
bool decode(const uint8_t* p, size_t n, Nack& out);
bool decode(const uint8_t* p, size_t n, Alive& out);
bool decode(const uint8_t* p, size_t n, Suspect& out);
bool decode(const uint8_t* p, size_t n, Dead& out);
bool decode(const uint8_t* p, size_t n, ErrResp& out);

/// compound (7): at most 255 parts, none empty.
Bytes compound(const std::vector<Bytes>& parts);
/// Splits a compound body (after the type byte) into views of its parts; false when the header
/// is malformed. Parts cut by a short buffer are dropped and counted in `truncated`.
bool splitCompound(const uint8_t* p, size_t n,
                   std::vector<std::pair<const uint8_t*, size_t>>& parts, size_t& truncated);

/// hasCrc (12): 0x0c + CRC32-IEEE (big-endian) of `msg` + msg.
Bytes withCrc(const Bytes& msg);
/// Checks a hasCrc body (after the type byte); on success `inner` points at the message.
bool checkCrc(const uint8_t* p, size_t n, const uint8_t*& inner, size_t& innerLen);

/// Go's compress/lzw, LSB order, literal width 8 (byte-exact with Go 1.19's writer).
Bytes lzwCompress(const uint8_t* p, size_t n);
/// False on a corrupt stream or when the output would exceed `maxOut`.
bool lzwDecompress(const uint8_t* p, size_t n, Bytes& out, size_t maxOut);
/// compress (9): 0x09 + msgpack {Algo: 0, Buf: lzw(msg)}.
Bytes compressMsg(const Bytes& msg);
/// A compress body (after the type byte) to the message it holds (type byte first).
bool decompressMsg(const uint8_t* p, size_t n, Bytes& out, size_t maxOut);

/// memberlist's AES-GCM encryption with a keyring: the first key encrypts, all keys decrypt.
class Keyring {
  public:
    /// 16, 24 or 32 bytes (AES-128/192/256); false otherwise.
    bool add(const Bytes& key);
    /// Decodes standard base64 and adds the key; false when it is not base64 of a valid key.
    bool addBase64(const std::string& b64);
    bool empty() const { return keys_.empty(); }
    size_t size() const { return keys_.size(); }
    /// Rotation, as memberlist's keyring does it: install a key everywhere, make it the
    /// primary (the one that encrypts) everywhere, then remove the old one. `use` is false for
    /// a key not installed, `remove` for a key not installed or the primary.
    bool use(const Bytes& key);
    bool remove(const Bytes& key);
    const std::vector<Bytes>& keys() const { return keys_; }
    /// Standard base64 (what `serf keygen` prints); false when it is not.
    static bool fromBase64(const std::string& b64, Bytes& key);

    /// UDP: version 1 | nonce(12) | ciphertext | tag(16); no additional data.
    Bytes encryptUdp(const uint8_t* p, size_t n) const;
    /// Versions 0 (PKCS7-padded) and 1, every key tried; false when none authenticates.
    bool decryptUdp(const uint8_t* p, size_t n, Bytes& out) const;
    /// TCP: 0x0a | length (u32 BE) | version 1 | nonce | ciphertext | tag; the 5 header bytes
    /// are the additional data.
    Bytes encryptTcp(const uint8_t* p, size_t n) const;
    /// `header` is the 5 bytes 0x0a + length, `body` the `length` bytes after it.
    bool decryptTcp(const uint8_t* header, const uint8_t* body, size_t n, Bytes& out) const;

  private:
    std::vector<Bytes> keys_;
};

/// A TCP stream message, parsed incrementally: feed what has arrived so far.
struct StreamMsg {
    MsgType type = MsgType::Err;
    bool encrypted = false;   // came inside 0x0a
    bool compressed = false;  // came inside 0x09
    Ping ping;                // type Ping
    Ack ack;                  // type Ack: the reply to a stream ping
    PushPull pushPull;        // type PushPull
    Bytes user;               // type User: the payload
    ErrResp err;              // type Err
};
enum class Parse { Ok, NeedMore, Bad };
/// Parses one stream message from `p[0..n)`. NeedMore: wait for more bytes (nothing consumed);
/// Bad: not a valid message (encrypted when `keys` is null or empty, plain when it is not,
/// corrupt, or larger than `maxBytes`). `error` says why for Bad.
Parse parseStream(const uint8_t* p, size_t n, const Keyring* keys, size_t maxBytes, StreamMsg& out,
                  std::string& error);

// Serf, on top of memberlist.
/// Tags in node meta: 0xFF + msgpack map (keys sorted: stable bytes). Empty when no tags.
Bytes encodeTags(const std::map<std::string, std::string>& tags);
/// serf's rule: meta not starting with 0xFF is {"role": meta}. False when malformed.
bool decodeTags(const Bytes& meta, std::map<std::string, std::string>& out);
/// serf leave intent (user payload): 0x00 + {LTime, Node, Prune: false}.
Bytes serfLeaveIntent(uint64_t ltime, const std::string& node);
/// serf join intent (user payload): 0x01 + {LTime, Node}.
Bytes serfJoinIntent(uint64_t ltime, const std::string& node);
/// The Lamport time carried by a serf user payload (intents, events, queries) or by serf's
/// push-pull user state (0x02 + {LTime,...}); false when there is none.
bool serfLTime(const uint8_t* p, size_t n, uint64_t& ltime);

}  // namespace mp::gossip
