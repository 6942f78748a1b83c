// Load generator for bench/proxy (built by that script; not part of qtbox).
//
// One process holds both ends so that bytes are counted where they arrive:
//   - a TCP sink and a TCP echo server on 127.0.0.1, one epoll thread each;
//   - commands on stdin, one per line, run against a Unix socket path:
//       throughput PATH STREAMS SECONDS  -> "throughput MiB/s BYTES"
//         STREAMS threads write 256 KiB blocks as fast as the path takes
//         them; the rate is what the sink received in the timed window
//         (after a 0.5 s warm-up), so buffering in between does not count;
//         BYTES is everything the sink got from this command.
//       latency PATH ROUNDS              -> "latency p50_us p99_us mean_us"
//         one connection, 64-byte request, the 64 bytes echoed back, timed
//         per round trip after 500 warm-up rounds.
// It prints "sink PORT" and "echo PORT" first.
#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sstream>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<unsigned long long> g_sunk { 0 };

int listen_loopback(int* port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 || ::listen(fd, 1024) < 0) {
        std::perror("listen");
        std::exit(1);
    }
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    *port = ntohs(address.sin_port);
    return fd;
}

// sink: read and count; echo: write back what was read (small messages).
void serve(int listener, bool echo)
{
    int epoll = ::epoll_create1(0);
    epoll_event event {};
    event.events = EPOLLIN;
    event.data.fd = listener;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
    std::vector<char> buffer(1 << 20);
    epoll_event events[64];
    for (;;) {
        int count = ::epoll_wait(epoll, events, 64, -1);
        for (int i = 0; i < count; ++i) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
                if (client < 0)
                    continue;
                int on = 1;
                ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
                epoll_event add {};
                add.events = EPOLLIN;
                add.data.fd = client;
                ::epoll_ctl(epoll, EPOLL_CTL_ADD, client, &add);
                continue;
            }
            for (;;) {
                ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
                if (n > 0) {
                    if (echo) {
                        ssize_t done = 0;
                        while (done < n) {
                            ssize_t w = ::send(fd, buffer.data() + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
                            if (w <= 0)
                                break;
                            done += w;
                        }
                    } else {
                        g_sunk += static_cast<unsigned long long>(n);
                    }
                    if (static_cast<size_t>(n) < buffer.size())
                        break;
                    continue;
                }
                if (n < 0 && errno == EAGAIN)
                    break;
                ::close(fd);
                break;
            }
        }
    }
}

int connect_unix(std::string const& path)
{
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0)
            return fd;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::perror(("connect " + path).c_str());
    std::exit(1);
}

void throughput(std::string const& path, int streams, double seconds)
{
    std::atomic<bool> stop { false };
    auto first_bytes = g_sunk.load();
    std::vector<int> fds;
    for (int i = 0; i < streams; ++i)
        fds.push_back(connect_unix(path));
    std::vector<std::thread> writers;
    for (int fd : fds) {
        writers.emplace_back([fd, &stop] {
            std::vector<char> block(256 * 1024, 'x');
            while (!stop.load(std::memory_order_relaxed)) {
                if (::send(fd, block.data(), block.size(), MSG_NOSIGNAL) <= 0)
                    break;
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto start_bytes = g_sunk.load();
    auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    auto end_bytes = g_sunk.load();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    stop = true;
    for (int fd : fds)
        ::shutdown(fd, SHUT_RDWR);
    for (auto& writer : writers)
        writer.join();
    for (int fd : fds)
        ::close(fd);
    // Let what is in flight arrive, so the total covers every byte sent.
    auto total = g_sunk.load();
    for (int i = 0; i < 100; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto now = g_sunk.load();
        if (now == total)
            break;
        total = now;
    }
    std::printf("throughput %.1f %llu\n", static_cast<double>(end_bytes - start_bytes) / elapsed / (1024.0 * 1024.0), total - first_bytes);
    std::fflush(stdout);
}

void latency(std::string const& path, int rounds)
{
    int fd = connect_unix(path);
    char message[64];
    std::memset(message, 'p', sizeof(message));
    std::vector<double> samples;
    samples.reserve(static_cast<size_t>(rounds));
    for (int i = 0; i < rounds + 500; ++i) {
        auto start = Clock::now();
        if (::send(fd, message, sizeof(message), 0) != sizeof(message)) {
            std::perror("send");
            std::exit(1);
        }
        size_t got = 0;
        char reply[64];
        while (got < sizeof(reply)) {
            ssize_t n = ::recv(fd, reply + got, sizeof(reply) - got, 0);
            if (n <= 0) {
                std::perror("recv");
                std::exit(1);
            }
            got += static_cast<size_t>(n);
        }
        if (i >= 500)
            samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    ::close(fd);
    std::sort(samples.begin(), samples.end());
    double mean = 0;
    for (double sample : samples)
        mean += sample;
    mean /= static_cast<double>(samples.size());
    std::printf("latency %.1f %.1f %.1f\n", samples[samples.size() / 2], samples[samples.size() * 99 / 100], mean);
    std::fflush(stdout);
}

} // namespace

int main()
{
    int sink_port = 0;
    int echo_port = 0;
    int sink = listen_loopback(&sink_port);
    int echo = listen_loopback(&echo_port);
    std::thread(serve, sink, false).detach();
    std::thread(serve, echo, true).detach();
    std::printf("sink %d\necho %d\n", sink_port, echo_port);
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream words(line);
        std::string command;
        std::string path;
        words >> command >> path;
        if (command == "throughput") {
            int streams = 1;
            double seconds = 3;
            words >> streams >> seconds;
            throughput(path, streams, seconds);
        } else if (command == "latency") {
            int rounds = 20000;
            words >> rounds;
            latency(path, rounds);
        } else if (command == "quit") {
            break;
        }
    }
    return 0;
}
