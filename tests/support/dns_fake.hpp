// A fake DNS server for the tests: answers built by hand (the server's side
// of RFC 1035 §4) and a UDP+TCP server on 127.0.0.1 that replies with them.
// Used by tests/net (the parser and the resolver) and tests/proxy (routes by
// name). Does not use doctest.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::test {

struct FakeRecord {
    std::string owner;
    std::uint16_t type;
    std::uint32_t ttl;
    Bytes data;
};

inline void put16(Bytes& out, std::uint16_t value)
{
    out.push_back(static_cast<std::uint8_t>(value >> 8));
    out.push_back(static_cast<std::uint8_t>(value & 0xFF));
}

inline void put32(Bytes& out, std::uint32_t value)
{
    put16(out, static_cast<std::uint16_t>(value >> 16));
    put16(out, static_cast<std::uint16_t>(value & 0xFFFF));
}

inline Bytes wire_name(std::string_view name)
{
    Bytes out;
    std::size_t start = 0;
    while (start < name.size()) {
        auto dot = name.find('.', start);
        if (dot == std::string_view::npos)
            dot = name.size();
        out.push_back(static_cast<std::uint8_t>(dot - start));
        for (std::size_t i = start; i < dot; ++i)
            out.push_back(static_cast<std::uint8_t>(name[i]));
        start = dot + 1;
    }
    out.push_back(0);
    return out;
}

// An answer to (id, name, type) with flags (QR is added) and records.
inline Bytes make_answer(std::uint16_t id, std::uint16_t flags, std::string_view name, std::uint16_t type,
    std::vector<FakeRecord> const& records)
{
    Bytes out;
    put16(out, id);
    put16(out, static_cast<std::uint16_t>(flags | 0x8000));
    put16(out, 1);
    put16(out, static_cast<std::uint16_t>(records.size()));
    put16(out, 0);
    put16(out, 0);
    auto question = wire_name(name);
    out.insert(out.end(), question.begin(), question.end());
    put16(out, type);
    put16(out, 1);
    for (auto const& record : records) {
        auto owner = wire_name(record.owner);
        out.insert(out.end(), owner.begin(), owner.end());
        put16(out, record.type);
        put16(out, 1);
        put32(out, record.ttl);
        put16(out, static_cast<std::uint16_t>(record.data.size()));
        out.insert(out.end(), record.data.begin(), record.data.end());
    }
    return out;
}

inline FakeRecord a_record(std::string owner, std::uint32_t ttl, std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d)
{
    return { std::move(owner), 1, ttl, { a, b, c, d } };
}

} // namespace qtbox::test

#include <qtbox/base/fd.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace qtbox::test {

// A DNS server on 127.0.0.1:<port> (UDP and TCP) for the tests, answering
// with whatever `respond` returns (nothing: no answer at all).
class FakeDnsServer {
public:
    struct Question {
        std::uint16_t id;
        std::string name;
        std::uint16_t type;
        bool tcp;
    };
    using Responder = std::function<Bytes(Question const&)>;

    explicit FakeDnsServer(Responder respond) : m_respond(std::move(respond))
    {
        // One port for UDP and TCP, from below Linux's ephemeral range: an
        // ephemeral UDP port may well be taken for TCP by a concurrent
        // test's outgoing connection (qt-proxy's tests make thousands).
        std::mt19937 generator(std::random_device {}());
        std::uniform_int_distribution<int> pick(20000, 31999);
        for (int attempt = 0; attempt < 1000 && m_port == 0; ++attempt) {
            sockaddr_in address {};
            address.sin_family = AF_INET;
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            address.sin_port = htons(static_cast<std::uint16_t>(pick(generator)));
            UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0
                || ::bind(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
                continue;
            m_udp = std::move(udp);
            m_tcp = std::move(tcp);
            m_port = ntohs(address.sin_port);
        }
        ::listen(m_tcp.get(), 8);
        int fds[2];
        if (::pipe(fds) == 0) {
            m_stop_read = UniqueFd(fds[0]);
            m_stop_write = UniqueFd(fds[1]);
        }
        m_thread = std::thread([this] { serve(); });
    }

    ~FakeDnsServer()
    {
        char byte = 0;
        (void)!::write(m_stop_write.get(), &byte, 1);
        m_thread.join();
    }

    std::uint16_t port() const { return m_port; }
    std::size_t questions() const { return m_questions.load(); }
    std::size_t tcp_questions() const { return m_tcp_questions.load(); }

private:
    static std::optional<Question> parse(Bytes const& message, bool tcp)
    {
        if (message.size() < 17)
            return std::nullopt;
        Question question { static_cast<std::uint16_t>((message[0] << 8) | message[1]), {}, 0, tcp };
        std::size_t p = 12;
        while (p < message.size() && message[p] != 0) {
            std::size_t length = message[p];
            if (p + 1 + length > message.size())
                return std::nullopt;
            if (!question.name.empty())
                question.name += '.';
            question.name.append(reinterpret_cast<char const*>(message.data() + p + 1), length);
            p += 1 + length;
        }
        if (p + 5 > message.size())
            return std::nullopt;
        question.type = static_cast<std::uint16_t>((message[p + 1] << 8) | message[p + 2]);
        return question;
    }

    void serve()
    {
        for (;;) {
            pollfd fds[3] = { { m_udp.get(), POLLIN, 0 }, { m_tcp.get(), POLLIN, 0 }, { m_stop_read.get(), POLLIN, 0 } };
            if (::poll(fds, 3, -1) < 0)
                continue;
            if (fds[2].revents)
                return;
            if (fds[0].revents & POLLIN) {
                Bytes buffer(4096);
                sockaddr_in from {};
                socklen_t length = sizeof(from);
                ssize_t n = ::recvfrom(m_udp.get(), buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&from), &length);
                if (n > 0) {
                    buffer.resize(static_cast<std::size_t>(n));
                    if (auto question = parse(buffer, false)) {
                        ++m_questions;
                        auto answer = m_respond(*question);
                        if (!answer.empty())
                            ::sendto(m_udp.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), length);
                    }
                }
            }
            if (fds[1].revents & POLLIN) {
                UniqueFd client(::accept(m_tcp.get(), nullptr, nullptr));
                std::uint8_t prefix[2];
                if (client && ::recv(client.get(), prefix, 2, MSG_WAITALL) == 2) {
                    Bytes buffer(static_cast<std::size_t>((prefix[0] << 8) | prefix[1]));
                    if (::recv(client.get(), buffer.data(), buffer.size(), MSG_WAITALL) == static_cast<ssize_t>(buffer.size())) {
                        if (auto question = parse(buffer, true)) {
                            ++m_questions;
                            ++m_tcp_questions;
                            auto answer = m_respond(*question);
                            Bytes framed { static_cast<std::uint8_t>(answer.size() >> 8), static_cast<std::uint8_t>(answer.size() & 0xFF) };
                            framed.insert(framed.end(), answer.begin(), answer.end());
                            if (!answer.empty())
                                ::send(client.get(), framed.data(), framed.size(), MSG_NOSIGNAL);
                        }
                    }
                }
            }
        }
    }

    Responder m_respond;
    UniqueFd m_udp;
    UniqueFd m_tcp;
    UniqueFd m_stop_read;
    UniqueFd m_stop_write;
    std::uint16_t m_port { 0 };
    std::atomic<std::size_t> m_questions { 0 };
    std::atomic<std::size_t> m_tcp_questions { 0 };
    std::thread m_thread;
};

} // namespace qtbox::test
