#include <qtbox/net/dns.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>

namespace qtbox::net::dns {

namespace {

constexpr std::uint16_t CLASS_IN = 1;
constexpr std::uint16_t TYPE_CNAME = 5;
constexpr std::uint16_t FLAG_QR = 0x8000;
constexpr std::uint16_t FLAG_TC = 0x0200;
constexpr std::uint16_t FLAG_RD = 0x0100;
constexpr std::size_t HEADER_SIZE = 12;
// A wire-format name is at most 255 bytes (RFC 1035 §3.1).
constexpr std::size_t MAX_WIRE_NAME = 255;

char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowercase(std::string_view text)
{
    std::string result(text);
    for (auto& c : result)
        c = lower(c);
    return result;
}

std::string_view without_trailing_dot(std::string_view name)
{
    if (!name.empty() && name.back() == '.')
        name.remove_suffix(1);
    return name;
}

// The name in wire format (length-prefixed labels, root label last),
// lowercased so that comparisons are case-insensitive (RFC 4343).
std::string to_wire(std::string_view name)
{
    std::string wire;
    name = without_trailing_dot(name);
    std::size_t start = 0;
    while (start <= name.size()) {
        auto dot = name.find('.', start);
        auto label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        wire += static_cast<char>(label.size());
        wire += lowercase(label);
        if (dot == std::string_view::npos)
            break;
        start = dot + 1;
    }
    wire += '\0';
    return wire;
}

Error malformed(std::string_view why)
{
    return Error::from_code(DnsError::Malformed, fmt::format("malformed DNS answer: {}", why));
}

class Reader {
public:
    explicit Reader(ByteView message) : m_message(message) { }

    std::size_t position() const { return m_position; }
    bool has(std::size_t count) const { return m_message.size() - m_position >= count; }
    ErrorOr<std::uint16_t> u16()
    {
        if (!has(2))
            return malformed("truncated");
        std::uint16_t value = static_cast<std::uint16_t>((m_message[m_position] << 8) | m_message[m_position + 1]);
        m_position += 2;
        return value;
    }
    ErrorOr<std::uint32_t> u32()
    {
        std::uint32_t high = TRY(u16());
        std::uint32_t low = TRY(u16());
        return (high << 16) | low;
    }
    ErrorOr<void> skip(std::size_t count)
    {
        if (!has(count))
            return malformed("truncated");
        m_position += count;
        return {};
    }
    // A possibly compressed name (RFC 1035 §4.1.4) in lowercase wire
    // format. Pointers must point strictly backwards, so reading always
    // ends; the expanded name may not exceed 255 bytes.
    ErrorOr<std::string> name()
    {
        std::string wire;
        std::size_t cursor = m_position;
        std::optional<std::size_t> resume;
        for (;;) {
            if (cursor >= m_message.size())
                return malformed("name runs past the end");
            std::uint8_t length = m_message[cursor];
            if ((length & 0xC0) == 0xC0) {
                if (cursor + 1 >= m_message.size())
                    return malformed("name runs past the end");
                std::size_t target = (static_cast<std::size_t>(length & 0x3F) << 8) | m_message[cursor + 1];
                if (target >= cursor)
                    return malformed("compression pointer does not point backwards");
                if (!resume)
                    resume = cursor + 2;
                cursor = target;
                continue;
            }
            if ((length & 0xC0) != 0)
                return malformed("unknown label type");
            if (cursor + 1 + length > m_message.size())
                return malformed("name runs past the end");
            if (wire.size() + 1 + length > MAX_WIRE_NAME)
                return malformed("name longer than 255 bytes");
            wire += static_cast<char>(length);
            for (std::size_t i = 0; i < length; ++i)
                wire += lower(static_cast<char>(m_message[cursor + 1 + i]));
            cursor += 1 + length;
            if (length == 0)
                break;
        }
        m_position = resume ? *resume : cursor;
        return wire;
    }
    void seek(std::size_t position) { m_position = position; }

private:
    ByteView m_message;
    std::size_t m_position { 0 };
};

struct Record {
    std::string owner;
    std::uint16_t type { 0 };
    std::uint16_t klass { 0 };
    std::uint32_t ttl { 0 };
    std::size_t data_offset { 0 };
    std::uint16_t data_length { 0 };
};

} // namespace

ErrorOr<void> validate_name(std::string_view name)
{
    auto invalid = [&](std::string_view why) {
        return Error::from_code(DnsError::InvalidName, fmt::format("invalid host name '{}': {}", name, why));
    };
    auto body = without_trailing_dot(name);
    if (body.empty())
        return invalid("empty");
    if (body.size() > MAX_NAME_LENGTH)
        return invalid(fmt::format("longer than {} characters", MAX_NAME_LENGTH));
    std::size_t start = 0;
    while (start <= body.size()) {
        auto dot = body.find('.', start);
        auto label = body.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty())
            return invalid("empty label");
        if (label.size() > MAX_LABEL_LENGTH)
            return invalid(fmt::format("label longer than {} characters", MAX_LABEL_LENGTH));
        if (label.front() == '-' || label.back() == '-')
            return invalid("a label starts or ends with '-'");
        for (char c : label) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (!ok)
                return invalid(fmt::format("character '{}' is not allowed", c));
        }
        if (dot == std::string_view::npos)
            break;
        start = dot + 1;
    }
    return {};
}

ErrorOr<Bytes> encode_query(std::uint16_t id, std::string_view name, RecordType type)
{
    TRY(validate_name(name));
    Bytes message;
    auto put16 = [&](std::uint16_t value) {
        message.push_back(static_cast<std::uint8_t>(value >> 8));
        message.push_back(static_cast<std::uint8_t>(value & 0xFF));
    };
    put16(id);
    put16(FLAG_RD);
    put16(1);
    put16(0);
    put16(0);
    put16(0);
    // The question keeps the caller's spelling; answers compare lowercased.
    auto body = without_trailing_dot(name);
    std::size_t start = 0;
    for (;;) {
        auto dot = body.find('.', start);
        auto label = body.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        message.push_back(static_cast<std::uint8_t>(label.size()));
        message.insert(message.end(), label.begin(), label.end());
        if (dot == std::string_view::npos)
            break;
        start = dot + 1;
    }
    message.push_back(0);
    put16(static_cast<std::uint16_t>(type));
    put16(CLASS_IN);
    return message;
}

ErrorOr<Answer> parse_response(ByteView message, std::uint16_t id, std::string_view name, RecordType type)
{
    if (message.size() < HEADER_SIZE)
        return malformed("shorter than a header");
    Reader reader(message);
    auto got_id = TRY(reader.u16());
    auto flags = TRY(reader.u16());
    auto question_count = TRY(reader.u16());
    auto answer_count = TRY(reader.u16());
    TRY(reader.skip(4));
    if (got_id != id || (flags & FLAG_QR) == 0 || ((flags >> 11) & 0xF) != 0)
        return Error::from_code(DnsError::Mismatch, "DNS answer does not match the query");
    unsigned rcode = flags & 0xF;
    auto rcode_error = [&]() -> Error {
        switch (rcode) {
        case 2: return Error::from_code(DnsError::ServerFailure, "DNS server failure (SERVFAIL)");
        case 3: return Error::from_code(DnsError::NameNotFound, fmt::format("{}: no such name (NXDOMAIN)", without_trailing_dot(name)));
        case 5: return Error::from_code(DnsError::Refused, "DNS server refused the query (REFUSED)");
        default: return Error::from_code(DnsError::OtherRcode, fmt::format("DNS server answered with rcode {}", rcode));
        }
    };
    // Some servers drop the question from error answers.
    if (rcode != 0 && question_count == 0)
        return rcode_error();
    if (question_count != 1)
        return Error::from_code(DnsError::Mismatch, "DNS answer does not match the query");
    auto wanted = to_wire(name);
    auto question = TRY(reader.name());
    auto question_type = TRY(reader.u16());
    auto question_class = TRY(reader.u16());
    if (question != wanted || question_type != static_cast<std::uint16_t>(type) || question_class != CLASS_IN)
        return Error::from_code(DnsError::Mismatch, "DNS answer does not match the query");
    if (rcode != 0)
        return rcode_error();
    Answer answer;
    if (flags & FLAG_TC) {
        answer.truncated = true;
        return answer;
    }

    std::vector<Record> records;
    for (std::size_t i = 0; i < answer_count && i < MAX_RECORDS; ++i) {
        Record record;
        record.owner = TRY(reader.name());
        record.type = TRY(reader.u16());
        record.klass = TRY(reader.u16());
        record.ttl = TRY(reader.u32());
        // RFC 2181 §8: a TTL with the top bit set is treated as zero.
        if (record.ttl > 0x7FFFFFFFu)
            record.ttl = 0;
        record.data_length = TRY(reader.u16());
        record.data_offset = reader.position();
        TRY(reader.skip(record.data_length));
        records.push_back(std::move(record));
    }

    std::string current = wanted;
    std::uint32_t ttl = 0xFFFFFFFFu;
    for (std::size_t hop = 0; hop <= MAX_CNAME_CHAIN; ++hop) {
        auto alias = std::find_if(records.begin(), records.end(), [&](Record const& record) {
            return record.type == TYPE_CNAME && record.klass == CLASS_IN && record.owner == current;
        });
        if (alias == records.end())
            break;
        if (hop == MAX_CNAME_CHAIN)
            return malformed(fmt::format("CNAME chain longer than {}", MAX_CNAME_CHAIN));
        Reader target_reader(message);
        target_reader.seek(alias->data_offset);
        auto target = TRY(target_reader.name());
        if (target_reader.position() != alias->data_offset + alias->data_length)
            return malformed("CNAME data length does not match its name");
        ttl = std::min(ttl, alias->ttl);
        current = std::move(target);
    }
    std::size_t const address_length = type == RecordType::A ? 4 : 16;
    for (auto const& record : records) {
        if (record.type != static_cast<std::uint16_t>(type) || record.klass != CLASS_IN || record.owner != current)
            continue;
        if (record.data_length != address_length)
            return malformed("address record of the wrong length");
        IpAddress address;
        address.is_v6 = type == RecordType::Aaaa;
        std::copy_n(message.begin() + static_cast<std::ptrdiff_t>(record.data_offset), address_length, address.bytes.begin());
        ttl = std::min(ttl, record.ttl);
        if (std::find(answer.addresses.begin(), answer.addresses.end(), address) == answer.addresses.end()
            && answer.addresses.size() < MAX_ADDRESSES)
            answer.addresses.push_back(address);
    }
    answer.ttl = answer.addresses.empty() ? 0 : ttl;
    return answer;
}

namespace {

// Splits on spaces and tabs.
std::vector<std::string_view> fields(std::string_view line)
{
    std::vector<std::string_view> result;
    std::size_t p = 0;
    while (p < line.size()) {
        while (p < line.size() && (line[p] == ' ' || line[p] == '\t' || line[p] == '\r'))
            ++p;
        auto start = p;
        while (p < line.size() && line[p] != ' ' && line[p] != '\t' && line[p] != '\r')
            ++p;
        if (p > start)
            result.push_back(line.substr(start, p - start));
    }
    return result;
}

template<typename Callback>
void for_each_line(std::string_view text, Callback callback)
{
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos)
            end = text.size();
        callback(text.substr(start, end - start));
        start = end + 1;
    }
}

} // namespace

std::vector<IpAddress> hosts_lookup(std::string_view text, std::string_view name, Family family)
{
    std::vector<IpAddress> result;
    auto wanted = lowercase(without_trailing_dot(name));
    for_each_line(text, [&](std::string_view line) {
        auto hash = line.find('#');
        if (hash != std::string_view::npos)
            line = line.substr(0, hash);
        auto parts = fields(line);
        if (parts.size() < 2 || parts[0].front() == '[')
            return;
        auto address = IpAddress::parse(parts[0]);
        if (!address || !address->matches(family))
            return;
        for (std::size_t i = 1; i < parts.size(); ++i) {
            if (lowercase(without_trailing_dot(parts[i])) == wanted) {
                if (std::find(result.begin(), result.end(), *address) == result.end() && result.size() < MAX_ADDRESSES)
                    result.push_back(*address);
                break;
            }
        }
    });
    return result;
}

ResolvConf parse_resolv_conf(std::string_view text)
{
    ResolvConf conf;
    auto option_value = [](std::string_view option, std::string_view key, int low, int high) -> std::optional<int> {
        if (!option.starts_with(key))
            return std::nullopt;
        int value = 0;
        auto digits = option.substr(key.size());
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (ec != std::errc() || end != digits.data() + digits.size())
            return std::nullopt;
        return std::clamp(value, low, high);
    };
    for_each_line(text, [&](std::string_view line) {
        if (!line.empty() && (line.front() == '#' || line.front() == ';'))
            return;
        auto parts = fields(line);
        if (parts.empty())
            return;
        if (parts[0] == "nameserver" && parts.size() >= 2) {
            auto address = IpAddress::parse(parts[1]);
            if (address && parts[1].front() != '[' && conf.nameservers.size() < MAX_NAMESERVERS)
                conf.nameservers.push_back(*address);
        } else if (parts[0] == "options") {
            for (std::size_t i = 1; i < parts.size(); ++i) {
                if (auto value = option_value(parts[i], "timeout:", 1, MAX_TIMEOUT_SECONDS))
                    conf.timeout_seconds = *value;
                else if (auto count = option_value(parts[i], "attempts:", 1, MAX_ATTEMPTS))
                    conf.attempts = *count;
            }
        }
    });
    if (conf.nameservers.empty())
        conf.nameservers.push_back(IpAddress::v4(127, 0, 0, 1));
    return conf;
}

} // namespace qtbox::net::dns
