// Small blocking servers and clients for the proxy's in-process tests (only
// tests/proxy uses them; the shared TempDir is in tests/support/).
#pragma once

#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace qtbox::proxy::test {

// A port for a test to listen on (or to find closed), from below Linux's
// ephemeral range: a bind(0) port, once closed, could be taken by any
// concurrent test's outgoing connection before the proxy binds it.
inline std::uint16_t free_tcp_port()
{
    static std::mt19937 generator(std::random_device {}());
    std::uniform_int_distribution<int> pick(20000, 31999);
    for (int attempt = 0; attempt < 1000; ++attempt) {
        auto port = static_cast<std::uint16_t>(pick(generator));
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address {};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0)
            return port;
    }
    return 0;
}

inline UniqueFd tcp_connect(std::uint16_t port)
{
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0)
        return {};
    return fd;
}

inline bool wait_for_path(std::string const& path, bool present = true)
{
    for (int i = 0; i < 500; ++i) {
        struct stat st { };
        if ((::lstat(path.c_str(), &st) == 0) == present)
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

inline UniqueFd unix_connect(std::string const& path)
{
    if (!wait_for_path(path))
        return {};
    auto fd = sys::unix_connect(path);
    return fd.is_error() ? UniqueFd() : fd.release_value();
}

// Reads until EOF (or error, or 10 s without data). `error` gets errno.
inline std::string read_all(int fd, int* error = nullptr)
{
    std::string data;
    char buffer[65536];
    for (;;) {
        pollfd p { fd, POLLIN, 0 };
        if (::poll(&p, 1, 10000) <= 0) {
            if (error)
                *error = ETIMEDOUT;
            return data;
        }
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0) {
            if (error)
                *error = errno;
            return data;
        }
        if (n == 0)
            return data;
        data.append(buffer, static_cast<std::size_t>(n));
    }
}

inline bool send_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Accepts on a listening socket and runs `handle` for each connection on
// its own thread. The handler owns the fd.
class Server {
public:
    using Handler = std::function<void(UniqueFd)>;

    Server(UniqueFd listener, Handler handle) : m_listener(std::move(listener)), m_handle(std::move(handle))
    {
        int fds[2];
        if (::pipe(fds) == 0) {
            m_stop_read = UniqueFd(fds[0]);
            m_stop_write = UniqueFd(fds[1]);
        }
        m_thread = std::thread([this] { loop(); });
    }
    ~Server()
    {
        char byte = 0;
        (void)!::write(m_stop_write.get(), &byte, 1);
        m_thread.join();
        for (auto& worker : m_workers)
            worker.join();
    }
    std::size_t accepted() const { return m_accepted.load(); }

    static Server tcp_echo(std::uint16_t* port)
    {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address {};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
        socklen_t length = sizeof(address);
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
        ::listen(fd.get(), 128);
        *port = ntohs(address.sin_port);
        return Server(std::move(fd), echo);
    }

    // Echoes until EOF, then half-closes and closes.
    static void echo(UniqueFd fd)
    {
        char buffer[65536];
        for (;;) {
            ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
            if (n <= 0)
                break;
            if (!send_all(fd.get(), std::string_view(buffer, static_cast<std::size_t>(n))))
                break;
        }
        ::shutdown(fd.get(), SHUT_WR);
    }

private:
    void loop()
    {
        for (;;) {
            pollfd fds[2] = { { m_listener.get(), POLLIN, 0 }, { m_stop_read.get(), POLLIN, 0 } };
            if (::poll(fds, 2, -1) < 0)
                continue;
            if (fds[1].revents)
                return;
            UniqueFd client(::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!client)
                continue;
            ++m_accepted;
            m_workers.emplace_back([this, fd = client.release()] { m_handle(UniqueFd(fd)); });
        }
    }

    UniqueFd m_listener;
    Handler m_handle;
    UniqueFd m_stop_read;
    UniqueFd m_stop_write;
    std::atomic<std::size_t> m_accepted { 0 };
    std::vector<std::thread> m_workers;
    std::thread m_thread;
};

} // namespace qtbox::proxy::test

namespace qtbox::proxy::test {

// An echo server on [::1], or nullopt-equivalent (port 0) without IPv6.
inline UniqueFd tcp6_listener(std::uint16_t* port)
{
    UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 address {};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 || ::listen(fd.get(), 16) < 0) {
        *port = 0;
        return {};
    }
    socklen_t length = sizeof(address);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
    *port = ntohs(address.sin6_port);
    return fd;
}

inline UniqueFd tcp6_connect(std::uint16_t port)
{
    UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 address {};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(port);
    address.sin6_addr = in6addr_loopback;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0)
        return {};
    return fd;
}

} // namespace qtbox::proxy::test
