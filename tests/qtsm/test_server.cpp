#include "support.hpp"

#include <qtbox/attest/verify.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/qtsm/client.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/server.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>

using namespace qtbox;
using namespace qtbox::test;
using qtsm::QtsmError;

namespace {

// qtsm-server in a thread, in front of a real backend that counts the
// requests that reach it.
struct ServerFixture {
    explicit ServerFixture(qtsm::ServerOptions options = {})
    {
        backend = make_backend(pki, clock);
        socket_path = directory.file("qtsm.sock");
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        UniqueFd upstream(fds[0]);
        backend_fd = UniqueFd(fds[1]);
        backend_thread = std::thread([this] {
            for (;;) {
                auto frame = qtsm::read_frame(backend_fd.get(), qtsm::MAX_REQUEST_SIZE);
                if (frame.is_error() || !frame.value())
                    return;
                ++forwarded;
                if (qtsm::write_frame(backend_fd.get(), backend->handle(*frame.value())).is_error())
                    return;
            }
        });
        stop = UniqueFd(::eventfd(0, EFD_CLOEXEC));
        options.stop_fd = stop.get();
        auto listener = must(sys::unix_listen(socket_path));
        server = std::make_unique<qtsm::Server>(must(qtsm::Server::create(std::move(listener), std::move(upstream), options)));
        server_thread = std::thread([this] { result = server->run(); });
    }
    ~ServerFixture()
    {
        std::uint64_t one = 1;
        (void)::write(stop.get(), &one, sizeof(one));
        server_thread.join();
        ::shutdown(backend_fd.get(), SHUT_RDWR);
        backend_thread.join();
    }
    UniqueFd raw_connection() const { return must(sys::unix_connect(socket_path)); }
    qtsm::Client client() const { return must(qtsm::Client::connect(socket_path, 5000)); }

    TestPki pki;
    TestClock clock;
    TempDir directory;
    std::unique_ptr<qtsm::Backend> backend;
    std::string socket_path;
    UniqueFd backend_fd;
    std::thread backend_thread;
    std::atomic<int> forwarded { 0 };
    UniqueFd stop;
    std::unique_ptr<qtsm::Server> server;
    std::thread server_thread;
    ErrorOr<void> result;
};

QtsmError call_error(qtsm::Client& client, qtsm::Request const& request)
{
    auto result = client.call(request);
    REQUIRE(result.is_error());
    return result.error().code_as<QtsmError>().value();
}

} // namespace

TEST_CASE("qtsm-server: refuses writes to PCR 0-15 itself and forwards the rest")
{
    ServerFixture fixture;
    auto client = fixture.client();
    CHECK(call_error(client, qtsm::ExtendPcrRequest { 3, { 1 } }) == QtsmError::ReadOnlyIndex);
    CHECK(call_error(client, qtsm::LockPcrRequest { 15 }) == QtsmError::ReadOnlyIndex);
    CHECK(call_error(client, qtsm::LockPcrsRequest { { 16, 0 } }) == QtsmError::ReadOnlyIndex);
    CHECK(call_error(client, qtsm::ExtendPcrRequest { 32, { 1 } }) == QtsmError::InvalidIndex);
    CHECK(call_error(client, qtsm::AttestationRequest { Bytes(513, 1), {}, {} }) == QtsmError::InputTooLarge);
    CHECK(fixture.forwarded == 0);
    auto value = must(client.extend_pcr(16, as_bytes("a")));
    CHECK(value.size() == 48);
    CHECK(must(client.describe_pcr(16)).data == value);
    must(client.lock_pcr(16));
    CHECK(call_error(client, qtsm::ExtendPcrRequest { 16, { 1 } }) == QtsmError::ReadOnlyIndex);
    CHECK(fixture.forwarded == 4);
    CHECK(must(client.random(1000)).size() == 1000);
}

TEST_CASE("qtsm-server: malformed CBOR gets an error and the connection survives")
{
    ServerFixture fixture;
    auto fd = fixture.raw_connection();
    must(qtsm::write_frame(fd.get(), Bytes { 0xbf, 0x00 }));
    CHECK(*must(qtsm::read_frame(fd.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InvalidArgument));
    must(sys::write_all(fd.get(), Bytes { 0, 0, 0, 0 }));
    CHECK(*must(qtsm::read_frame(fd.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InvalidArgument));
    qtsm::Client client(std::move(fd));
    CHECK(must(client.describe()).max_pcrs == 32);
    CHECK(fixture.forwarded == 1);
}

TEST_CASE("qtsm-server: an over-long frame is answered InputTooLarge and the client dropped")
{
    ServerFixture fixture;
    auto fd = fixture.raw_connection();
    must(sys::write_all(fd.get(), Bytes { 0, 0, 0x10, 0x01 }));
    CHECK(*must(qtsm::read_frame(fd.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InputTooLarge));
    CHECK_FALSE(must(qtsm::read_frame(fd.get(), qtsm::MAX_RESPONSE_SIZE)).has_value());
    // The server goes on serving others.
    CHECK(must(fixture.client().describe_pcr(0)).lock);
}

TEST_CASE("qtsm-server: a client that stalls inside a frame is dropped; idle clients are not")
{
    qtsm::ServerOptions options;
    options.frame_timeout_ms = 200;
    ServerFixture fixture(options);
    auto idle = fixture.client();
    auto stalled = fixture.raw_connection();
    must(sys::write_all(stalled.get(), Bytes { 0, 0 }));
    must(qtsm::set_socket_timeouts(stalled.get(), 5000));
    // The server closes it after the frame timeout: EOF, no answer.
    CHECK_FALSE(must(qtsm::read_frame(stalled.get(), qtsm::MAX_RESPONSE_SIZE)).has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(must(idle.describe()).max_pcrs == 32);
}

TEST_CASE("qtsm-server: past max_clients new connections are closed at once")
{
    qtsm::ServerOptions options;
    options.max_clients = 2;
    ServerFixture fixture(options);
    auto first = fixture.client();
    auto second = fixture.client();
    CHECK(must(first.describe()).max_pcrs == 32);
    CHECK(must(second.describe()).max_pcrs == 32);
    auto third = fixture.raw_connection();
    must(qtsm::set_socket_timeouts(third.get(), 5000));
    CHECK_FALSE(must(qtsm::read_frame(third.get(), qtsm::MAX_RESPONSE_SIZE)).has_value());
}

TEST_CASE("qtsm-server: concurrent clients get their own, valid documents")
{
    ServerFixture fixture;
    constexpr int CLIENTS = 16;
    std::vector<Bytes> documents(CLIENTS);
    std::vector<std::thread> threads;
    for (int i = 0; i < CLIENTS; ++i) {
        threads.emplace_back([&, i] {
            auto client = qtsm::Client::connect(fixture.socket_path, 10'000);
            if (client.is_error())
                return;
            qtsm::AttestationRequest request;
            request.nonce = Bytes(16, static_cast<std::uint8_t>(i));
            auto document = client.value().attestation(request);
            if (!document.is_error())
                documents[static_cast<std::size_t>(i)] = document.release_value();
        });
    }
    for (auto& thread : threads)
        thread.join();
    attest::VerifyOptions options;
    options.anchor.roots.push_back(fixture.pki.authority().root);
    options.at = T0;
    std::set<std::string> distinct;
    for (int i = 0; i < CLIENTS; ++i) {
        REQUIRE_FALSE(documents[static_cast<std::size_t>(i)].empty());
        auto verified = must(attest::verify_document(documents[static_cast<std::size_t>(i)], options));
        CHECK(verified.document.nonce == Bytes(16, static_cast<std::uint8_t>(i)));
        distinct.insert(hex_encode(documents[static_cast<std::size_t>(i)]));
    }
    CHECK(distinct.size() == CLIENTS);
}

TEST_CASE("qtsm-server: screening decodes with the QTSM's rules")
{
    require_error(qtsm::screen_request(qtsm::encode_request(qtsm::ExtendPcrRequest { 7, { 1 } })), QtsmError::ReadOnlyIndex);
    require_error(qtsm::screen_request(qtsm::encode_request(qtsm::DescribePcrRequest { 40 })), QtsmError::InvalidIndex);
    require_error(qtsm::screen_request(Bytes { 0xff }), QtsmError::InvalidArgument);
    auto forwarded = must(qtsm::screen_request(qtsm::encode_request(qtsm::DescribePcrRequest { 5 })));
    CHECK(std::get<qtsm::DescribePcrRequest>(forwarded).index == 5);
}

TEST_CASE("qtsm-server: run() fails when the QTSM closes the channel")
{
    TempDir directory;
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    UniqueFd upstream(fds[0]);
    UniqueFd other_end(fds[1]);
    auto listener = must(sys::unix_listen(directory.file("s.sock")));
    auto server = must(qtsm::Server::create(std::move(listener), std::move(upstream)));
    other_end.reset();
    auto result = server.run();
    REQUIRE(result.is_error());
    CHECK(result.error().message().find("the QTSM closed the channel") != std::string::npos);
}
