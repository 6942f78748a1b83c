#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace qtbox::vsock {

bool is_reserved_parent_port(std::uint32_t port)
{
    return port == HEARTBEAT_PORT || port == QTSM_PORT;
}

std::string connect_request(std::uint32_t port)
{
    return fmt::format("CONNECT {}\n", port);
}

std::string connect_reply(std::uint32_t port)
{
    return fmt::format("OK {}\n", port);
}

namespace {

ErrorOr<std::optional<HandshakeLine>> parse_line(std::string_view buffer, std::string_view keyword)
{
    auto newline = buffer.find('\n');
    if (newline == std::string_view::npos) {
        if (buffer.size() >= MAX_HANDSHAKE_LINE)
            return Error::from_code(HandshakeError::TooLong, fmt::format("handshake line longer than {} bytes", MAX_HANDSHAKE_LINE));
        // Reject early what can never become "<keyword> ": a peer that
        // answers with something else is reported at once, not at the limit.
        auto prefix = buffer.substr(0, std::min(buffer.size(), keyword.size() + 1));
        if (prefix != std::string_view(fmt::format("{} ", keyword)).substr(0, prefix.size()))
            return Error::from_code(HandshakeError::Malformed, fmt::format("expected '{} <port>'", keyword));
        return std::optional<HandshakeLine> {};
    }
    if (newline + 1 > MAX_HANDSHAKE_LINE)
        return Error::from_code(HandshakeError::TooLong, fmt::format("handshake line longer than {} bytes", MAX_HANDSHAKE_LINE));
    auto line = buffer.substr(0, newline);
    auto bad = [&] { return Error::from_code(HandshakeError::Malformed, fmt::format("expected '{} <port>'", keyword)); };
    if (line.size() <= keyword.size() + 1 || line.substr(0, keyword.size()) != keyword || line[keyword.size()] != ' ')
        return bad();
    auto digits = line.substr(keyword.size() + 1);
    if (digits.size() > 10 || (digits.size() > 1 && digits[0] == '0'))
        return bad();
    std::uint64_t value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9')
            return bad();
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (value > 0xFFFFFFFFu)
        return bad();
    return std::optional<HandshakeLine> { HandshakeLine { static_cast<std::uint32_t>(value), newline + 1 } };
}

} // namespace

ErrorOr<std::optional<HandshakeLine>> parse_connect_request(std::string_view buffer)
{
    return parse_line(buffer, "CONNECT");
}

ErrorOr<std::optional<HandshakeLine>> parse_connect_reply(std::string_view buffer)
{
    return parse_line(buffer, "OK");
}

} // namespace qtbox::vsock
