// The virtio-vsock device (virtio 1.2 §5.10) with hybrid vsock
// (docs/FORMATS.md §6), driven as a Linux guest would drive it: the
// driver-side simulator of tests/support/virtio_driver.hpp plays the guest's
// virtqueues through a real MmioTransport, real Unix sockets in a temporary
// directory play the parent's programs, and the test pumps the event loop.
#include "../support/must.hpp"
#include "../support/temp_dir.hpp"
#include "../support/virtio_driver.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/devices/virtio/vsock_packet.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/vsock/address.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace qtbox;
using namespace qtbox::devices::virtio;
using namespace qtbox::devices::virtio::vsock;
using qtbox::test::must;
using qtbox::test::TempDir;
using qtbox::test::VirtqueueDriver;
namespace address = qtbox::vsock;

namespace {

constexpr std::uint64_t GUEST_CID = 7;
constexpr std::uint32_t GUEST_BUF_ALLOC = 256 * 1024;
constexpr std::uint64_t CLOCK_NS = 0x0102030405060708;

struct Packet {
    Header header;
    Bytes payload;
    Op op() const { return static_cast<Op>(header.op); }
};

// RX buffer shapes: Linux 6.1 posts the header and a 4 KiB payload as two
// descriptors; later kernels post one buffer for both.
enum class RxLayout {
    Split, // 44 + 4096
    Single, // 4140
    Scattered, // 20 + 24 + 1000 + 3096: header and payload cut anywhere
    HeaderOnly, // 44: no room for data
};

// A service whose answers dwarf its requests, as the QTSM's documents do:
// each byte is answered with ANSWER_SIZE copies of itself.
constexpr std::uint32_t BIG_ANSWER_PORT = 7777;
constexpr std::size_t ANSWER_SIZE = 60 * 1024;

class BigAnswerSession final : public VsockSession {
public:
    ErrorOr<std::size_t> consume(ByteView data, Bytes& answers) override
    {
        if (data.empty())
            return 0;
        answers.insert(answers.end(), ANSWER_SIZE, data[0]);
        return 1;
    }
};

class BigAnswerService final : public VsockService {
public:
    std::unique_ptr<VsockSession> open() override { return std::make_unique<BigAnswerSession>(); }
};

struct Options {
    std::size_t max_connections { 1024 };
    int handshake_timeout_ms { 10'000 };
    int close_timeout_ms { 10'000 };
    bool event_index { false };
    bool listener { true };
};

class Harness {
public:
    explicit Harness(Options options = {})
        : memory(test::make_guest_memory(16 << 20))
        , loop(must(net::EventLoop::create()))
        , rx_driver(memory, { .size = 64, .ring_address = 0x1000, .buffer_address = 0x100000, .slot_size = 0x11000 })
        , tx_driver(memory, { .size = 64, .ring_address = 0x4000, .buffer_address = 0x600000, .slot_size = 0x11000 })
        , event_driver(memory, { .size = 8, .ring_address = 0x8000, .buffer_address = 0xB00000, .slot_size = 64 })
    {
        REQUIRE(::mkdir(listener_dir().c_str(), 0755) == 0);
        irq = must(sys::eventfd());
        VsockConfig config;
        config.guest_cid = GUEST_CID;
        config.listener_dir = listener_dir();
        config.host_socket_path = options.listener ? socket_path() : "";
        config.services[address::HEARTBEAT_PORT]
            = std::make_shared<HeartbeatService>([] { return CLOCK_NS; }, [this] { ++heartbeats; });
        config.services[BIG_ANSWER_PORT] = std::make_shared<BigAnswerService>();
        config.limits.max_connections = options.max_connections;
        config.limits.handshake_timeout_ms = options.handshake_timeout_ms;
        config.limits.close_timeout_ms = options.close_timeout_ms;
        config.notice = [this](Notice const& notice) { notices.push_back(notice.text); };
        device = must(VsockDevice::create(std::move(config), loop));
        transport = must(MmioTransport::create(*device, memory, irq.get()));
        must(device->attach(*transport));
        mmio.emplace(*transport);
        std::uint64_t wanted = options.event_index ? VIRTIO_F_EVENT_IDX : 0;
        REQUIRE(mmio->initialize(wanted,
            { { VSOCK_QUEUE_RX, rx_driver.layout() }, { VSOCK_QUEUE_TX, tx_driver.layout() },
                { VSOCK_QUEUE_EVENT, event_driver.layout() } }));
        pump();
    }

    ~Harness()
    {
        // The device goes between two waits, before its transport.
        device.reset();
    }

    std::string listener_dir() const { return dir / "vsock"; }
    std::string socket_path() const { return dir / "vsock.sock"; }

    // Runs the loop until nothing is ready.
    void pump()
    {
        for (int round = 0; round < 1000; ++round) {
            if (must(loop.wait(0)) == 0)
                return;
        }
        FAIL("the event loop never went idle");
    }

    // Lets a deadline pass.
    void wait_ms(int milliseconds)
    {
        auto until = net::Clock::now() + std::chrono::milliseconds(milliseconds);
        while (net::Clock::now() < until)
            must(loop.wait(5));
        pump();
    }

    Header packet(
        Op op, std::uint32_t guest_port, std::uint32_t parent_port, std::uint32_t len = 0, std::uint32_t flags = 0)
    {
        Header header;
        header.src_cid = GUEST_CID;
        header.dst_cid = address::PARENT_CID;
        header.src_port = guest_port;
        header.dst_port = parent_port;
        header.len = len;
        header.type = TYPE_STREAM;
        header.op = static_cast<std::uint16_t>(op);
        header.flags = flags;
        header.buf_alloc = buf_alloc;
        header.fwd_cnt = guest_fwd_cnt[guest_port];
        return header;
    }

    // One TX chain: header and payload, cut into descriptors of the given
    // sizes (the rest in one last descriptor).
    void transmit(Header const& header, ByteView payload = {}, std::vector<std::size_t> cuts = {})
    {
        auto raw = encode_header(header);
        Bytes bytes(raw.begin(), raw.end());
        bytes.insert(bytes.end(), payload.begin(), payload.end());
        transmit_raw(bytes, cuts);
    }

    void transmit_raw(ByteView bytes, std::vector<std::size_t> cuts = {})
    {
        std::vector<ByteView> pieces;
        std::size_t at = 0;
        for (auto cut : cuts) {
            cut = std::min(cut, bytes.size() - at);
            pieces.push_back(bytes.subspan(at, cut));
            at += cut;
        }
        if (at < bytes.size() || pieces.empty())
            pieces.push_back(bytes.subspan(at));
        tx_driver.send(pieces, {});
        mmio->notify(VSOCK_QUEUE_TX);
        pump();
        while (tx_driver.take_used()) { }
    }

    void send(Op op, std::uint32_t guest_port, std::uint32_t parent_port, std::uint32_t flags = 0)
    {
        transmit(packet(op, guest_port, parent_port, 0, flags));
    }

    void send_data(
        std::uint32_t guest_port, std::uint32_t parent_port, ByteView data, std::vector<std::size_t> cuts = {})
    {
        transmit(packet(Op::Rw, guest_port, parent_port, static_cast<std::uint32_t>(data.size())), data, cuts);
    }

    void offer_rx(std::size_t count = 1, RxLayout layout = RxLayout::Split)
    {
        for (std::size_t i = 0; i < count; ++i) {
            switch (layout) {
            case RxLayout::Split:
                rx_driver.send({}, { HEADER_SIZE, 4096 });
                break;
            case RxLayout::Single:
                rx_driver.send({}, { HEADER_SIZE + 4096 });
                break;
            case RxLayout::Scattered:
                rx_driver.send({}, { 20, 24, 1000, 3096 });
                break;
            case RxLayout::HeaderOnly:
                rx_driver.send({}, { HEADER_SIZE });
                break;
            }
        }
        mmio->notify(VSOCK_QUEUE_RX);
        pump();
    }

    // Every packet the device has put on the RX queue since the last call.
    std::vector<Packet> received()
    {
        std::vector<Packet> packets;
        while (auto done = rx_driver.take_used()) {
            if (done->length == 0)
                continue;
            REQUIRE(done->length >= HEADER_SIZE);
            REQUIRE(done->written.size() == done->length);
            Packet packet;
            packet.header
                = decode_header(std::span<std::uint8_t const, HEADER_SIZE>(done->written.data(), HEADER_SIZE));
            packet.payload.assign(done->written.begin() + HEADER_SIZE, done->written.end());
            CHECK(packet.header.len == packet.payload.size());
            CHECK(packet.header.src_cid == address::PARENT_CID);
            CHECK(packet.header.dst_cid == GUEST_CID);
            packets.push_back(packet);
        }
        return packets;
    }

    // Exactly one packet is waiting; offers a buffer for it first.
    Packet expect_one()
    {
        offer_rx();
        auto packets = received();
        REQUIRE(packets.size() == 1);
        return packets[0];
    }

    void expect_none()
    {
        offer_rx();
        auto packets = received();
        CHECK(packets.empty());
    }

    // A Unix listener at <listener_dir>/3_<port>, as qt-proxy makes.
    UniqueFd listen_on(std::uint32_t port)
    {
        return must(sys::unix_listen(listener_dir() + "/3_" + std::to_string(port)));
    }

    // The guest connects from `guest_port` to CID 3 `parent_port` (a
    // listener must be there) and the test accepts the host side.
    UniqueFd connect_guest(std::uint32_t guest_port, std::uint32_t parent_port, int listener)
    {
        send(Op::Request, guest_port, parent_port);
        auto reply = expect_one();
        REQUIRE(reply.op() == Op::Response);
        CHECK(reply.header.src_port == parent_port);
        CHECK(reply.header.dst_port == guest_port);
        CHECK(reply.header.buf_alloc == BUFFER_SIZE);
        UniqueFd accepted(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        REQUIRE(accepted);
        return accepted;
    }

    // Every byte a host socket has now (non-blocking); `eof` says whether
    // it ended.
    std::string drain(int fd, bool* eof = nullptr)
    {
        std::string text;
        char buffer[65536];
        for (;;) {
            ssize_t got = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
            if (got > 0) {
                text.append(buffer, static_cast<std::size_t>(got));
                continue;
            }
            if (eof)
                *eof = got == 0 || (got < 0 && errno == ECONNRESET);
            return text;
        }
    }

    // Guest side of a stream: offers buffers, collects RW payloads for the
    // connection, and tells the device what it consumed, until `size` bytes
    // came or nothing moves.
    std::string receive_stream(std::uint32_t guest_port, std::size_t size, RxLayout layout = RxLayout::Split)
    {
        std::string data;
        for (int round = 0; round < 10'000 && data.size() < size; ++round) {
            offer_rx(8, layout);
            auto packets = received();
            std::size_t before = data.size();
            for (auto const& packet : packets) {
                if (packet.header.dst_port != guest_port)
                    continue;
                if (packet.op() == Op::Rw)
                    data.append(packet.payload.begin(), packet.payload.end());
            }
            if (data.size() != before) {
                guest_fwd_cnt[guest_port] += static_cast<std::uint32_t>(data.size() - before);
                // What Linux does after reading: CREDIT_UPDATE when space is low.
                last_parent_port = packets.back().header.src_port;
                send(Op::CreditUpdate, guest_port, last_parent_port);
            } else if (packets.empty()) {
                pump();
            }
        }
        return data;
    }

    TempDir dir;
    kvm::GuestMemory memory;
    net::EventLoop loop;
    VirtqueueDriver rx_driver;
    VirtqueueDriver tx_driver;
    VirtqueueDriver event_driver;
    UniqueFd irq;
    std::unique_ptr<VsockDevice> device;
    std::unique_ptr<MmioTransport> transport;
    std::optional<test::MmioDriver> mmio;
    std::vector<std::string> notices;
    int heartbeats { 0 };
    std::uint32_t buf_alloc { GUEST_BUF_ALLOC };
    std::map<std::uint32_t, std::uint32_t> guest_fwd_cnt;
    std::uint32_t last_parent_port { 0 };
};

std::string random_text(std::size_t size, unsigned seed)
{
    std::mt19937 generator(seed);
    std::string text(size, '\0');
    for (auto& c : text)
        c = static_cast<char>(generator());
    return text;
}

bool has_notice(Harness const& harness, std::string_view fragment)
{
    return std::any_of(harness.notices.begin(), harness.notices.end(),
        [&](std::string const& text) { return text.find(fragment) != std::string::npos; });
}

// A parent program: connects to vsock.sock and writes "CONNECT <port>\n".
UniqueFd parent_connect(Harness& harness, std::uint32_t port)
{
    auto fd = must(sys::unix_connect(harness.socket_path()));
    must(sys::write_all(fd.get(), address::connect_request(port)));
    harness.pump();
    return fd;
}

} // namespace

TEST_CASE("vsock device: the configuration space holds the guest CID, and the parent socket is 0660")
{
    Harness harness;
    std::uint8_t config[12];
    std::fill(std::begin(config), std::end(config), 0xEE);
    harness.mmio->read_config(0, config);
    CHECK(config[0] == GUEST_CID);
    for (int i = 1; i < 12; ++i)
        CHECK(config[i] == 0);
    auto status = must(sys::lstat(harness.socket_path()));
    CHECK(S_ISSOCK(status.st_mode));
    CHECK((status.st_mode & 0777) == 0660);
}

TEST_CASE("vsock device: a stale parent socket is replaced, a live one is not stolen, and the device removes its own")
{
    std::string path;
    {
        TempDir stale_dir;
        auto stale_path = stale_dir / "vsock.sock";
        // A socket file whose listener is gone.
        must(sys::unix_listen(stale_path));
        auto loop = must(net::EventLoop::create());
        VsockConfig config;
        config.guest_cid = GUEST_CID;
        config.host_socket_path = stale_path;
        auto replaced = VsockDevice::create(std::move(config), loop);
        CHECK_FALSE(replaced.is_error());
    }
    {
        Harness harness;
        path = harness.socket_path();
        auto loop = must(net::EventLoop::create());
        VsockConfig second;
        second.guest_cid = GUEST_CID;
        second.host_socket_path = path;
        auto refused = VsockDevice::create(std::move(second), loop);
        REQUIRE(refused.is_error());
        CHECK(refused.error().is(net::SocketError::AddressInUse));
    }
    CHECK(sys::lstat(path).is_error());
}

TEST_CASE("vsock device: a guest REQUEST to a listening port is answered with RESPONSE, to a silent one with RST")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    CHECK(harness.device->connection_count() == 1);

    harness.send(Op::Request, 1025, 5001);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(reset.header.src_port == 5001);
    CHECK(reset.header.dst_port == 1025);
    CHECK(harness.device->connection_count() == 1);
}

TEST_CASE("vsock device: a second REQUEST for a live connection resets it")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send(Op::Request, 1024, 5000);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(harness.device->connection_count() == 0);
    bool eof = false;
    harness.drain(host.get(), &eof);
    CHECK(eof);
    CHECK(has_notice(harness, "REQUEST for a connection that is open"));
}

TEST_CASE("vsock device: packets of no connection are answered with RST, except RST")
{
    Harness harness;
    for (auto op : { Op::Rw, Op::Response, Op::Shutdown, Op::CreditUpdate, Op::CreditRequest }) {
        harness.send(op, 2000, 6000);
        auto reset = harness.expect_one();
        CHECK(reset.op() == Op::Rst);
        CHECK(reset.header.src_port == 6000);
        CHECK(reset.header.dst_port == 2000);
    }
    harness.send(Op::Rst, 2000, 6000);
    harness.expect_none();
}

TEST_CASE("vsock device: a parent CONNECT becomes a REQUEST, and the guest's RESPONSE an OK line")
{
    Harness harness;
    auto client = parent_connect(harness, 8080);
    auto request = harness.expect_one();
    CHECK(request.op() == Op::Request);
    CHECK(request.header.dst_port == 8080);
    CHECK(request.header.src_port >= (1u << 30));
    CHECK(request.header.buf_alloc == BUFFER_SIZE);
    std::uint32_t local = request.header.src_port;
    CHECK(harness.drain(client.get()).empty());

    harness.send(Op::Response, 8080, local);
    CHECK(harness.drain(client.get()) == "OK " + std::to_string(local) + "\n");

    // And the stream flows both ways.
    harness.send_data(8080, local, as_bytes("from the guest"));
    CHECK(harness.drain(client.get()) == "from the guest");
    must(sys::write_all(client.get(), "from the parent"));
    harness.pump();
    CHECK(harness.receive_stream(8080, 15) == "from the parent");

    // A second parent connection gets another local port.
    auto second = parent_connect(harness, 8080);
    auto next = harness.expect_one();
    CHECK(next.op() == Op::Request);
    CHECK(next.header.src_port != local);
}

TEST_CASE("vsock device: a guest RST to a parent connection closes it without OK")
{
    Harness harness;
    auto client = parent_connect(harness, 8080);
    auto request = harness.expect_one();
    harness.send(Op::Rst, 8080, request.header.src_port);
    bool eof = false;
    CHECK(harness.drain(client.get(), &eof).empty());
    CHECK(eof);
    CHECK(harness.device->connection_count() == 0);
}

TEST_CASE("vsock device: a bad CONNECT line closes the parent connection")
{
    Harness harness;
    for (std::string const& line : std::vector<std::string> { "CONNECT x\n", "HELLO 5\n", std::string(40, 'C') }) {
        auto fd = must(sys::unix_connect(harness.socket_path()));
        must(sys::write_all(fd.get(), line));
        harness.pump();
        bool eof = false;
        CHECK(harness.drain(fd.get(), &eof).empty());
        CHECK(eof);
    }
    CHECK(harness.device->connection_count() == 0);
    harness.expect_none();
}

TEST_CASE("vsock device: a parent that never finishes its line, or a guest that never answers, times out")
{
    Options options;
    options.handshake_timeout_ms = 50;
    Harness harness(options);
    auto silent = must(sys::unix_connect(harness.socket_path()));
    must(sys::write_all(silent.get(), "CONN"));
    auto unanswered = parent_connect(harness, 8080);
    auto request = harness.expect_one();
    CHECK(request.op() == Op::Request);
    CHECK(harness.device->connection_count() == 2);
    harness.wait_ms(120);
    CHECK(harness.device->connection_count() == 0);
    bool eof = false;
    harness.drain(silent.get(), &eof);
    CHECK(eof);
    eof = false;
    CHECK(harness.drain(unanswered.get(), &eof).empty());
    CHECK(eof);
    // The REQUEST that went out is withdrawn.
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(reset.header.src_port == request.header.src_port);
}

TEST_CASE("vsock device: guest SHUTDOWN(SEND) ends the host's input after the data; both flags are answered with RST")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send_data(1024, 5000, as_bytes("last words"));
    harness.send(Op::Shutdown, 1024, 5000, SHUTDOWN_SEND);
    bool eof = false;
    CHECK(harness.drain(host.get(), &eof) == "last words");
    CHECK(eof);
    // The host can still answer.
    must(sys::write_all(host.get(), "reply"));
    harness.pump();
    CHECK(harness.receive_stream(1024, 5) == "reply");
    harness.send(Op::Shutdown, 1024, 5000, SHUTDOWN_SEND | SHUTDOWN_RECEIVE);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(harness.device->connection_count() == 0);
}

TEST_CASE("vsock device: guest SHUTDOWN(RECEIVE) stops reading the host")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send(Op::Shutdown, 1024, 5000, SHUTDOWN_RECEIVE);
    must(sys::write_all(host.get(), "unwanted"));
    harness.pump();
    harness.expect_none();
    CHECK(harness.device->connection_count() == 1);
}

TEST_CASE("vsock device: the guest's close (both SHUTDOWN flags) flushes buffered data to the host, then closes it")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    // Fill the host socket's buffer so that data waits in the device.
    auto text = random_text(250 * 1024, 1);
    std::size_t sent = 0;
    while (sent < text.size()) {
        std::size_t chunk = std::min<std::size_t>(MAX_PACKET_PAYLOAD, text.size() - sent);
        harness.send_data(1024, 5000, as_bytes(std::string_view(text).substr(sent, chunk)));
        sent += chunk;
    }
    harness.send(Op::Shutdown, 1024, 5000, SHUTDOWN_SEND | SHUTDOWN_RECEIVE);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    // Still counted while it drains (more than a Unix socket's buffer
    // waits in the device), but no longer the guest's.
    CHECK(harness.device->connection_count() == 1);
    harness.send(Op::Rw, 1024, 5000);
    CHECK(harness.expect_one().op() == Op::Rst);
    std::string got;
    bool eof = false;
    for (int round = 0; round < 1000 && !eof; ++round) {
        got += harness.drain(host.get(), &eof);
        harness.pump();
    }
    CHECK(eof);
    CHECK(got == text);
    CHECK(harness.device->connection_count() == 0);
}

TEST_CASE("vsock device: the host's end of stream becomes SHUTDOWN(SEND); a host reset becomes RST")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    must(sys::write_all(host.get(), "bye"));
    ::shutdown(host.get(), SHUT_WR);
    harness.pump();
    harness.offer_rx(4);
    auto packets = harness.received();
    REQUIRE(packets.size() == 2);
    CHECK(packets[0].op() == Op::Rw);
    CHECK(std::string(packets[0].payload.begin(), packets[0].payload.end()) == "bye");
    CHECK(packets[1].op() == Op::Shutdown);
    CHECK(packets[1].header.flags == SHUTDOWN_SEND);
    // The guest can still send.
    harness.send_data(1024, 5000, as_bytes("after"));
    CHECK(harness.drain(host.get()) == "after");

    auto second = harness.connect_guest(1025, 5000, listener.get());
    // Closing with unread data makes the peer see ECONNRESET.
    harness.send_data(1025, 5000, as_bytes("unread"));
    second.reset();
    harness.pump();
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(reset.header.dst_port == 1025);
}

TEST_CASE("vsock device: a guest RST closes the host side at once")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send(Op::Rst, 1024, 5000);
    bool eof = false;
    harness.drain(host.get(), &eof);
    CHECK(eof);
    CHECK(harness.device->connection_count() == 0);
    harness.expect_none();
}

TEST_CASE("vsock device: the device never sends more than the guest's credit; CREDIT_UPDATE resumes")
{
    Harness harness;
    harness.buf_alloc = 10'000;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    auto text = random_text(30'000, 2);
    must(sys::write_all(host.get(), text));
    harness.pump();
    harness.offer_rx(8);
    std::string got;
    for (auto const& packet : harness.received()) {
        CHECK(packet.op() == Op::Rw);
        got.append(packet.payload.begin(), packet.payload.end());
    }
    CHECK(got.size() == 10'000);
    harness.offer_rx(4);
    CHECK(harness.received().empty());

    harness.guest_fwd_cnt[1024] = 4'000;
    harness.send(Op::CreditUpdate, 1024, 5000);
    harness.offer_rx(8);
    for (auto const& packet : harness.received())
        got.append(packet.payload.begin(), packet.payload.end());
    CHECK(got.size() == 14'000);
    CHECK(got == text.substr(0, 14'000));
}

TEST_CASE("vsock device: a guest that sends beyond the device's credit is reset")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    // No RX buffers: the guest is never told of any progress, so its credit
    // is BUFFER_SIZE in all.
    Bytes chunk(MAX_PACKET_PAYLOAD, 0x5A);
    for (std::uint32_t sent = 0; sent < BUFFER_SIZE; sent += MAX_PACKET_PAYLOAD)
        harness.send_data(1024, 5000, chunk);
    CHECK(harness.device->connection_count() == 1);
    harness.send_data(1024, 5000, as_bytes("x"));
    CHECK(harness.device->connection_count() == 0);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(has_notice(harness, "beyond the credit"));
}

TEST_CASE("vsock device: CREDIT_REQUEST is answered with CREDIT_UPDATE")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send_data(1024, 5000, as_bytes("12345"));
    CHECK(harness.drain(host.get()) == "12345");
    harness.send(Op::CreditRequest, 1024, 5000);
    auto update = harness.expect_one();
    CHECK(update.op() == Op::CreditUpdate);
    CHECK(update.header.fwd_cnt == 5);
    CHECK(update.header.buf_alloc == BUFFER_SIZE);
}

TEST_CASE("vsock device: the guest's view of free space falling low brings a CREDIT_UPDATE")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    Bytes chunk(MAX_PACKET_PAYLOAD, 0x11);
    // The host takes each packet at once: only the guest's view is low.
    for (int i = 0; i < 3; ++i) {
        harness.send_data(1024, 5000, chunk);
        CHECK(harness.drain(host.get()).size() == MAX_PACKET_PAYLOAD);
    }
    harness.expect_none();
    harness.send_data(1024, 5000, chunk);
    harness.drain(host.get());
    auto update = harness.expect_one();
    CHECK(update.op() == Op::CreditUpdate);
    CHECK(update.header.fwd_cnt == 4 * MAX_PACKET_PAYLOAD);
}

TEST_CASE("vsock device: data arrives intact both ways, split across descriptors and buffer layouts")
{
    for (bool event_index : { false, true }) {
        CAPTURE(event_index);
        Options options;
        options.event_index = event_index;
        Harness harness(options);
        auto listener = harness.listen_on(5000);
        auto host = harness.connect_guest(1024, 5000, listener.get());

        // Guest → host, in packets of every size with header and payload cut
        // at odd places.
        auto up = random_text(300 * 1024, 3);
        std::mt19937 generator(4);
        std::string got;
        std::size_t sent = 0;
        while (sent < up.size()) {
            std::size_t size = std::min<std::size_t>(1 + generator() % MAX_PACKET_PAYLOAD, up.size() - sent);
            std::vector<std::size_t> cuts { 1 + generator() % 43, 1 + generator() % 100, 1 + generator() % 5000 };
            harness.send_data(1024, 5000, as_bytes(std::string_view(up).substr(sent, size)), cuts);
            sent += size;
            got += harness.drain(host.get());
            // The guest learns the device's progress from its packets.
            harness.offer_rx(2);
            for (auto const& packet : harness.received())
                CHECK(packet.op() == Op::CreditUpdate);
        }
        for (int round = 0; round < 100 && got.size() < up.size(); ++round) {
            harness.pump();
            got += harness.drain(host.get());
        }
        CHECK(got == up);

        // Host → guest, through each buffer layout.
        for (auto layout : { RxLayout::Split, RxLayout::Single, RxLayout::Scattered }) {
            auto down = random_text(100 * 1024, 5 + static_cast<unsigned>(layout));
            // The socket buffer takes it all; the device reads it as credit allows.
            must(sys::write_all(host.get(), down));
            harness.pump();
            CHECK(harness.receive_stream(1024, down.size(), layout) == down);
        }
    }
}

TEST_CASE("vsock device: a slow host reader gets every byte in order, the guest paced by credit updates")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    auto text = random_text(1536 * 1024, 8);
    std::string got;
    std::size_t sent = 0;
    std::uint32_t device_fwd_cnt = 0;
    std::mt19937 generator(9);
    for (int round = 0; round < 100'000 && got.size() < text.size(); ++round) {
        // Send what the credit the device last advertised allows.
        std::size_t credit = BUFFER_SIZE - (static_cast<std::uint32_t>(sent) - device_fwd_cnt);
        std::size_t size = std::min({ credit, text.size() - sent, std::size_t(1 + generator() % MAX_PACKET_PAYLOAD) });
        if (size > 0) {
            harness.send_data(1024, 5000, as_bytes(std::string_view(text).substr(sent, size)));
            sent += size;
        }
        // The host reads a little at a time.
        char buffer[12 * 1024];
        ssize_t taken = ::recv(host.get(), buffer, 1 + generator() % sizeof(buffer), MSG_DONTWAIT);
        if (taken > 0)
            got.append(buffer, static_cast<std::size_t>(taken));
        harness.pump();
        if (harness.rx_driver.free_descriptors() >= 8)
            harness.offer_rx(1);
        for (auto const& packet : harness.received()) {
            CHECK(packet.op() == Op::CreditUpdate);
            device_fwd_cnt = packet.header.fwd_cnt;
        }
    }
    CHECK(got.size() == text.size());
    CHECK(got == text);
    CHECK(harness.device->connection_count() == 1);
}

TEST_CASE("vsock device: a stalled host peer on one connection does not block another")
{
    Harness harness;
    auto slow_listener = harness.listen_on(5000);
    auto fast_listener = harness.listen_on(5001);
    auto slow = harness.connect_guest(1024, 5000, slow_listener.get());
    auto fast = harness.connect_guest(1025, 5001, fast_listener.get());
    Bytes chunk(MAX_PACKET_PAYLOAD, 0x33);
    // The slow peer reads nothing: its socket buffer fills, the rest waits in
    // the device, up to the whole credit.
    for (std::uint32_t sent = 0; sent < BUFFER_SIZE; sent += MAX_PACKET_PAYLOAD)
        harness.send_data(1024, 5000, chunk);
    harness.send_data(1025, 5001, as_bytes("ping"));
    CHECK(harness.drain(fast.get()) == "ping");
    must(sys::write_all(fast.get(), "pong"));
    harness.pump();
    CHECK(harness.receive_stream(1025, 4) == "pong");
    CHECK(harness.device->connection_count() == 2);
    // The slow peer wakes up and gets every byte.
    std::string got;
    for (int round = 0; round < 1000 && got.size() < BUFFER_SIZE; ++round) {
        got += harness.drain(slow.get());
        harness.pump();
    }
    CHECK(got.size() == BUFFER_SIZE);
}

TEST_CASE("vsock device: connections with data take turns on the RX queue")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto first = harness.connect_guest(1024, 5000, listener.get());
    auto second = harness.connect_guest(1025, 5000, listener.get());
    must(sys::write_all(first.get(), random_text(40 * 1024, 6)));
    must(sys::write_all(second.get(), random_text(40 * 1024, 7)));
    harness.pump();
    harness.offer_rx(8);
    auto packets = harness.received();
    REQUIRE(packets.size() == 8);
    for (std::size_t i = 0; i < packets.size(); ++i) {
        CHECK(packets[i].op() == Op::Rw);
        CHECK(packets[i].payload.size() == 4096);
        CHECK(packets[i].header.dst_port == packets[i % 2].header.dst_port);
    }
    CHECK(packets[0].header.dst_port != packets[1].header.dst_port);
}

TEST_CASE("vsock device: the heartbeat answers 0xB7 and the clock, and reports the first heartbeat only")
{
    Harness harness;
    harness.send(Op::Request, 1024, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send_data(1024, address::HEARTBEAT_PORT, Bytes { HeartbeatService::MAGIC });
    auto reply = harness.expect_one();
    CHECK(reply.op() == Op::Rw);
    CHECK(reply.payload == Bytes { 0xB7, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 });
    CHECK(harness.heartbeats == 1);
    CHECK(harness.device->connection_count() == 1);
    // init closes: SHUTDOWN with both flags, answered with RST.
    harness.send(Op::Shutdown, 1024, address::HEARTBEAT_PORT, SHUTDOWN_SEND | SHUTDOWN_RECEIVE);
    CHECK(harness.expect_one().op() == Op::Rst);
    CHECK(harness.device->connection_count() == 0);

    harness.send(Op::Request, 1025, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send_data(1025, address::HEARTBEAT_PORT, Bytes { HeartbeatService::MAGIC });
    CHECK(harness.expect_one().payload.size() == 9);
    CHECK(harness.heartbeats == 1);
}

TEST_CASE("vsock device: a wrong heartbeat byte, or more than one, is reset")
{
    Harness harness;
    harness.send(Op::Request, 1024, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send_data(1024, address::HEARTBEAT_PORT, Bytes { 0xB6 });
    CHECK(harness.expect_one().op() == Op::Rst);
    CHECK(harness.heartbeats == 0);

    harness.send(Op::Request, 1025, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send_data(1025, address::HEARTBEAT_PORT, Bytes { 0xB7, 0xB7 });
    CHECK(harness.expect_one().op() == Op::Rst);

    harness.send(Op::Request, 1026, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send_data(1026, address::HEARTBEAT_PORT, Bytes { 0xB7 });
    CHECK(harness.expect_one().op() == Op::Rw);
    harness.send_data(1026, address::HEARTBEAT_PORT, Bytes { 0xB7 });
    CHECK(harness.expect_one().op() == Op::Rst);
    CHECK(harness.heartbeats == 1);
    CHECK(harness.device->connection_count() == 0);
}

TEST_CASE("vsock device: a service's answers wait for the guest, and its requests wait in the credit; no reset")
{
    // 40 requests whose answers (2.4 MB) are far more than the device keeps
    // for one service connection, sent before the guest reads any answer,
    // as qtsm-server does with many clients: the device holds the requests
    // and hands them on as the guest takes the answers.
    Harness harness;
    harness.send(Op::Request, 1024, BIG_ANSWER_PORT);
    REQUIRE(harness.expect_one().op() == Op::Response);
    Bytes requests(40);
    for (std::size_t i = 0; i < requests.size(); ++i)
        requests[i] = static_cast<std::uint8_t>(i);
    harness.send_data(1024, BIG_ANSWER_PORT, requests);
    harness.pump();
    CHECK(harness.device->connection_count() == 1);
    auto answers = harness.receive_stream(1024, requests.size() * ANSWER_SIZE);
    REQUIRE(answers.size() == requests.size() * ANSWER_SIZE);
    for (std::size_t i = 0; i < requests.size(); ++i) {
        auto answer = std::string_view(answers).substr(i * ANSWER_SIZE, ANSWER_SIZE);
        INFO("answer " << i);
        CHECK(answer.find_first_not_of(static_cast<char>(i)) == std::string_view::npos);
    }
    CHECK(harness.device->connection_count() == 1);
    CHECK(harness.notices.empty());
}

TEST_CASE("vsock device: connections beyond max_connections are refused, from both sides")
{
    Options options;
    options.max_connections = 2;
    Harness harness(options);
    auto listener = harness.listen_on(5000);
    auto first = harness.connect_guest(1024, 5000, listener.get());
    harness.send(Op::Request, 1025, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.send(Op::Request, 1026, 5000);
    CHECK(harness.expect_one().op() == Op::Rst);
    CHECK(harness.device->connection_count() == 2);
    auto client = must(sys::unix_connect(harness.socket_path()));
    harness.pump();
    bool eof = false;
    harness.drain(client.get(), &eof);
    CHECK(eof);
    CHECK(has_notice(harness, "connections are open"));
    // A closed connection makes room again.
    harness.send(Op::Rst, 1024, 5000);
    harness.send(Op::Request, 1027, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
}

TEST_CASE("vsock device: bad headers are dropped or reset, never crash, and the device keeps working")
{
    Harness harness;
    // Wrong source CID (not this guest's) and wrong destination: dropped.
    auto header = harness.packet(Op::Request, 1024, address::HEARTBEAT_PORT);
    header.src_cid = 8;
    harness.transmit(header);
    header = harness.packet(Op::Request, 1024, address::HEARTBEAT_PORT);
    header.dst_cid = 2;
    harness.transmit(header);
    harness.expect_none();
    CHECK(has_notice(harness, "addressed from CID 8 to CID 3"));
    // Wrong type, unknown op, a length beyond the chain or the limit: RST.
    header = harness.packet(Op::Request, 1024, address::HEARTBEAT_PORT);
    header.type = 2;
    harness.transmit(header);
    auto reset = harness.expect_one();
    CHECK(reset.op() == Op::Rst);
    CHECK(reset.header.type == 2);
    header = harness.packet(Op::Request, 1024, address::HEARTBEAT_PORT);
    header.op = 99;
    harness.transmit(header);
    CHECK(harness.expect_one().op() == Op::Rst);
    header = harness.packet(Op::Rw, 1024, address::HEARTBEAT_PORT, 100);
    harness.transmit(header, as_bytes("short"));
    CHECK(harness.expect_one().op() == Op::Rst);
    Bytes big(MAX_PACKET_PAYLOAD + 1, 0);
    header = harness.packet(Op::Rw, 1024, address::HEARTBEAT_PORT, static_cast<std::uint32_t>(big.size()));
    harness.transmit(header, big, { HEADER_SIZE, 0x10000 });
    CHECK(harness.expect_one().op() == Op::Rst);
    // A chain shorter than a header: nothing to answer.
    harness.transmit_raw(as_bytes("tiny"));
    harness.expect_none();
    // A length beyond the chain on an open connection resets it.
    harness.send(Op::Request, 1030, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    header = harness.packet(Op::Rw, 1030, address::HEARTBEAT_PORT, 2);
    harness.transmit(header, as_bytes("x"));
    CHECK(harness.expect_one().op() == Op::Rst);
    CHECK(harness.device->connection_count() == 0);

    // A descriptor outside guest memory: the chain comes back empty.
    auto head = harness.tx_driver.add({ as_bytes(std::string(HEADER_SIZE, 'h')) }, {});
    REQUIRE(head);
    auto descriptor = harness.tx_driver.read_descriptor(*head);
    descriptor.address = 1ull << 40;
    harness.tx_driver.write_descriptor(*head, descriptor);
    harness.tx_driver.make_available(*head);
    harness.tx_driver.publish();
    harness.mmio->notify(VSOCK_QUEUE_TX);
    harness.pump();
    auto used = harness.tx_driver.take_used();
    REQUIRE(used);
    CHECK(used->length == 0);
    // A device-readable RX buffer, and one too small for a header.
    harness.rx_driver.send({ as_bytes("readable") }, { 4096 });
    harness.rx_driver.send({}, { 10 });
    harness.mmio->notify(VSOCK_QUEUE_RX);
    harness.pump();
    CHECK(harness.received().empty());

    // Still serving.
    harness.send(Op::Request, 1040, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
}

TEST_CASE("vsock device: RX buffers too small for data carry control packets and leave data waiting")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    harness.send(Op::Request, 1024, 5000);
    harness.offer_rx(1, RxLayout::HeaderOnly);
    auto packets = harness.received();
    REQUIRE(packets.size() == 1);
    CHECK(packets[0].op() == Op::Response);
    UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(host);
    must(sys::write_all(host.get(), "data"));
    harness.pump();
    harness.offer_rx(2, RxLayout::HeaderOnly);
    CHECK(harness.received().empty());
    CHECK(harness.receive_stream(1024, 4) == "data");
}

TEST_CASE("vsock device: a reset drops every connection and keeps the listener")
{
    Harness harness;
    auto listener = harness.listen_on(5000);
    auto host = harness.connect_guest(1024, 5000, listener.get());
    harness.send(Op::Request, 1025, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    harness.mmio->reset();
    CHECK(harness.device->connection_count() == 0);
    harness.pump();
    bool eof = false;
    harness.drain(host.get(), &eof);
    CHECK(eof);
    // A parent connecting while no driver is there is closed at its line.
    auto client = parent_connect(harness, 8080);
    eof = false;
    harness.drain(client.get(), &eof);
    CHECK(eof);
    CHECK(S_ISSOCK(must(sys::lstat(harness.socket_path())).st_mode));
}

TEST_CASE("vsock device: the used-buffer interrupt is raised")
{
    Harness harness;
    std::uint64_t count = 0;
    while (::read(harness.irq.get(), &count, sizeof(count)) > 0) { }
    harness.send(Op::Request, 1024, address::HEARTBEAT_PORT);
    harness.offer_rx();
    CHECK(::read(harness.irq.get(), &count, sizeof(count)) == sizeof(count));
    CHECK(count >= 1);
    CHECK((harness.mmio->interrupt_status() & 1) == 1);
}

TEST_CASE("vsock device: a guest opening 10,000 connections gets max_connections, the rest reset, and the device keeps answering")
{
    // Load test (issue 15). Bounds asserted: never more than max_connections
    // open (host sockets included), every request beyond it reset at once,
    // a bounded number of notices, and afterwards the heartbeat and a new
    // data connection work.
    constexpr std::size_t LIMIT = 256;
    constexpr std::uint32_t REQUESTS = 10'000;
    Options options;
    options.max_connections = LIMIT;
    Harness harness(options);
    auto listener = must(sys::unix_listen(harness.listener_dir() + "/3_5000", 0660, 4096));
    auto descriptors = [] {
        std::size_t count = 0;
        for ([[maybe_unused]] auto const& entry : std::filesystem::directory_iterator("/proc/self/fd"))
            ++count;
        return count;
    };
    std::size_t descriptors_before = descriptors();

    std::vector<UniqueFd> accepted;
    std::size_t responses = 0, resets = 0;
    for (std::uint32_t i = 0; i < REQUESTS; ++i) {
        std::uint32_t guest_port = 10'000 + i;
        harness.send(Op::Request, guest_port, 5000);
        auto reply = harness.expect_one();
        REQUIRE(reply.header.dst_port == guest_port);
        if (reply.op() == Op::Response) {
            ++responses;
            UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
            REQUIRE(host);
            accepted.push_back(std::move(host));
        } else {
            REQUIRE(reply.op() == Op::Rst);
            ++resets;
        }
        REQUIRE(harness.device->connection_count() <= LIMIT);
    }
    CHECK(responses == LIMIT);
    CHECK(resets == REQUESTS - LIMIT);
    // The device holds one host socket per connection, the test the other end.
    CHECK(descriptors() <= descriptors_before + 2 * LIMIT + 8);
    CHECK(has_notice(harness, "connections are open"));
    CHECK(harness.notices.size() < 64);

    // The guest lets go of them: every host side sees its end, and there
    // is room again for the heartbeat and a new data connection.
    for (std::uint32_t i = 0; i < REQUESTS; ++i) {
        if (harness.device->connection_count() == 0)
            break;
        harness.send(Op::Rst, 10'000 + i, 5000);
    }
    harness.pump();
    CHECK(harness.device->connection_count() == 0);
    for (auto& host : accepted) {
        bool eof = false;
        harness.drain(host.get(), &eof);
        CHECK(eof);
    }
    harness.send(Op::Request, 40'000, address::HEARTBEAT_PORT);
    CHECK(harness.expect_one().op() == Op::Response);
    auto fresh = harness.connect_guest(40'001, 5000, listener.get());
    std::string hello = "still answering";
    harness.send_data(40'001, 5000, as_bytes(hello));
    harness.pump();
    CHECK(harness.drain(fresh.get()) == hello);
}
