// The pieces of name resolution that need no I/O: DNS messages (RFC 1035
// §4), /etc/hosts and /etc/resolv.conf.
//
// qtbox is a static glibc binary, and static glibc's getaddrinfo loads NSS
// modules at run time for anything but numeric addresses; a blocking call
// would also stall the proxy's event loop. So qt-proxy resolves rule targets
// itself: numeric addresses directly, then the hosts file, then DNS over
// UDP (TCP when the answer is truncated) to the resolv.conf name servers,
// asynchronously (resolver.hpp). Names are always treated as fully
// qualified: `search`/`domain` are ignored, so that the parent's search list
// can never change where a rule connects.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/net/socket.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::net::dns {

constexpr std::size_t MAX_NAME_LENGTH = 253;
constexpr std::size_t MAX_LABEL_LENGTH = 63;
// Without EDNS(0) a UDP answer is at most 512 bytes (RFC 1035 §4.2.1);
// anything longer comes over TCP with a 16-bit length prefix (§4.2.2).
constexpr std::size_t MAX_UDP_MESSAGE = 512;
constexpr std::size_t MAX_TCP_MESSAGE = 65535;
// Records followed per answer, and addresses kept: enough for any real
// service, small enough that a hostile server cannot make us spend.
constexpr std::size_t MAX_RECORDS = 64;
constexpr std::size_t MAX_CNAME_CHAIN = 8;
constexpr std::size_t MAX_ADDRESSES = 16;
// glibc's limits for resolv.conf (resolv.h MAXNS, RES_MAXRETRANS, RES_MAXRETRY).
constexpr std::size_t MAX_NAMESERVERS = 3;
constexpr int MAX_TIMEOUT_SECONDS = 30;
constexpr int MAX_ATTEMPTS = 5;
// Larger hosts/resolv.conf files are refused rather than read.
constexpr std::size_t MAX_HOSTS_FILE = 4 * 1024 * 1024;
constexpr std::size_t MAX_RESOLV_CONF = 64 * 1024;

enum class RecordType : std::uint16_t {
    A = 1,
    Aaaa = 28,
};

// Why a lookup failed, for callers that branch (a missing name is final;
// a server failure means "ask the next server").
enum class DnsError {
    Malformed = 1,
    Mismatch,
    NameNotFound,
    ServerFailure,
    Refused,
    OtherRcode,
    InvalidName, // validate_name: not a host name a rule may use
};

// A host name as written in a rule: 1-253 characters, labels of 1-63
// letters, digits, '-' or '_', not starting or ending with '-'; one trailing
// dot allowed.
ErrorOr<void> validate_name(std::string_view name);

// A standard query (RD set) for one name and type.
ErrorOr<Bytes> encode_query(std::uint16_t id, std::string_view name, RecordType type);

struct Answer {
    std::vector<IpAddress> addresses;
    // The smallest TTL of the records used, in seconds.
    std::uint32_t ttl { 0 };
    // TC was set: the caller should ask again over TCP.
    bool truncated { false };
};

// Checks that `message` answers exactly our question (id, QR, opcode,
// question name/type/class), then collects the addresses for the name,
// following a CNAME chain inside the answer. A truncated answer comes back
// with truncated = true and no addresses.
ErrorOr<Answer> parse_response(ByteView message, std::uint16_t id, std::string_view name, RecordType type);

// Addresses for `name` in hosts-file text, in file order, without
// duplicates, filtered by family. Names compare case-insensitively.
std::vector<IpAddress> hosts_lookup(std::string_view text, std::string_view name, Family family);

struct ResolvConf {
    std::vector<IpAddress> nameservers;
    int timeout_seconds { 5 };
    int attempts { 2 };
};
// `nameserver` lines (the first three) and `options timeout:N attempts:N`;
// everything else is ignored. No name server means 127.0.0.1, as in glibc.
ResolvConf parse_resolv_conf(std::string_view text);

} // namespace qtbox::net::dns
