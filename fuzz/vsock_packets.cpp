// libFuzzer target: the virtio-vsock device (virtio 1.2 §5.10,
// docs/PLATFORMS.md §V4) as a hostile guest drives it. The input is a script
// (vsock_script.hpp): TX packets with any header, length, op and chain shape,
// RX buffers of any layout, raw descriptors and ring indices, notifications,
// driver resets, and parent programs that connect to the enclave's socket.
// It runs against a real VsockDevice behind a real MmioTransport on
// simulated guest memory (tests/support/virtio_driver.hpp), with the event
// loop pumped after each command. No outside peer is needed: the services
// (the heartbeat on 9000, an echo service on 9001) answer inside the device,
// the listener directory has no sockets (every other port is refused), and
// the parent programs are the target's own sockets.
//
// Properties checked beyond "no crash, no hang, no leak, no UB":
//   - the device never has more than MAX_CONNECTIONS connections;
//   - until the script writes raw descriptors or indices, every used entry
//     names a chain the guest made available; TX chains come back with
//     length 0; an RX chain comes back empty or holding one packet that
//     fits it: length 44 + len, len at most MAX_PACKET_PAYLOAD, from CID 3
//     to the guest, a known op, type STREAM (or the echoed type of an RST).
#include "../tests/support/virtio_driver.hpp"
#include "support.hpp"
#include "vsock_script.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/devices/virtio/vsock_packet.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vsock/address.hpp>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <vector>

namespace {

using namespace qtbox;
using namespace qtbox::devices::virtio;
using namespace qtbox::fuzz::vsock_script;
using fuzz::require;
using test::VirtqueueDriver;
namespace address = qtbox::vsock;
namespace packet = qtbox::devices::virtio::vsock;

constexpr std::size_t MAX_COMMANDS = 64;
constexpr std::size_t MAX_CONNECTIONS = 4;
constexpr std::size_t MAX_CLIENTS = 8;
// Rounds of the event loop per command; the device yields after at most
// one queue's worth of chains, so a few rounds always settle it.
constexpr int MAX_PUMP_ROUNDS = 64;
constexpr std::uint64_t MEMORY_SIZE = 4 << 20;
constexpr std::size_t QUEUE_COUNT = 3;

// RX, TX, event: rings low, then each queue's buffer slots (one per
// descriptor, large enough for any piece a script asks for).
constexpr std::array<VirtqueueDriver::Options, QUEUE_COUNT> SHAPES { {
    { .size = 16, .ring_address = 0x1000, .buffer_address = 0x10000, .slot_size = 0x2000 },
    { .size = 16, .ring_address = 0x2000, .buffer_address = 0x40000, .slot_size = 0x11000 },
    { .size = 4, .ring_address = 0x3000, .buffer_address = 0x200000, .slot_size = 64 },
} };

class Input {
public:
    Input(std::uint8_t const* data, std::size_t size)
        : m_data(data)
        , m_size(size)
    {
    }
    bool done() const { return m_at >= m_size; }
    std::uint8_t u8() { return m_at < m_size ? m_data[m_at++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | u8() << 8); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(u16()) | static_cast<std::uint32_t>(u16()) << 16; }
    std::uint64_t u64() { return static_cast<std::uint64_t>(u32()) | static_cast<std::uint64_t>(u32()) << 32; }

private:
    std::uint8_t const* m_data;
    std::size_t m_size;
    std::size_t m_at { 0 };
};

class EchoSession final : public VsockSession {
public:
    ErrorOr<std::size_t> consume(ByteView data, Bytes& answers) override
    {
        if (!data.empty() && data[0] == 0xFF)
            return Error::from_string("echo: refused");
        // Up to 4 KiB per call, echoed: the device's flow control decides
        // how much it hands over.
        auto taken = std::min<std::size_t>(data.size(), 4096);
        answers.insert(answers.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(taken));
        return taken;
    }
};

class EchoService final : public VsockService {
public:
    std::unique_ptr<VsockSession> open() override { return std::make_unique<EchoSession>(); }
};

// A directory for the enclave socket, made once per process and removed at
// exit (never destroyed before that: the exit handler still reads it); its
// vsock/ subdirectory stays empty.
std::string const& work_directory()
{
    static std::string const* const made = [] {
        auto* directory
            = new std::string((std::filesystem::temp_directory_path() / "qtbox-fuzz-vsock-XXXXXX").string());
        require(::mkdtemp(directory->data()) != nullptr);
        require(::mkdir((*directory + "/vsock").c_str(), 0700) == 0);
        std::atexit([] {
            std::error_code ignored;
            std::filesystem::remove_all(work_directory(), ignored);
        });
        return directory;
    }();
    return *made;
}

// One queue as the script's guest keeps it: its layout, which descriptors
// are free, and what each outstanding chain was.
struct GuestQueue {
    std::unique_ptr<VirtqueueDriver> driver;
    std::vector<std::uint16_t> free;
    std::map<std::uint16_t, std::vector<std::pair<std::uint16_t, std::uint32_t>>> outstanding; // head → (index, length)
    std::uint16_t next_available { 0 };
    std::uint16_t last_used { 0 };
};

class Run {
public:
    Run()
        : m_memory(test::make_guest_memory(MEMORY_SIZE))
        , m_loop(must(net::EventLoop::create()))
    {
        VsockConfig config;
        config.guest_cid = GUEST_CID;
        config.listener_dir = work_directory() + "/vsock";
        config.host_socket_path = work_directory() + "/vsock.sock";
        config.services[PARENT_PORTS[0]] = std::make_shared<HeartbeatService>([] { return 42; }, [] {});
        config.services[PARENT_PORTS[1]] = std::make_shared<EchoService>();
        config.limits.max_connections = MAX_CONNECTIONS;
        config.limits.handshake_timeout_ms = 60'000;
        config.limits.close_timeout_ms = 60'000;
        m_device = must(VsockDevice::create(std::move(config), m_loop));
        m_transport = must(MmioTransport::create(*m_device, m_memory, -1));
        must(m_device->attach(*m_transport));
        m_mmio.emplace(*m_transport);
        initialize(false);
    }

    ~Run()
    {
        // Between two waits, before the transport (vsock.hpp).
        m_clients.clear();
        m_device.reset();
    }

    void execute(Input& input)
    {
        for (std::size_t count = 0; count < MAX_COMMANDS && !input.done(); ++count) {
            switch (input.u8() % COMMAND_COUNT) {
            case TRANSMIT:
                transmit(input);
                break;
            case OFFER_RX:
                offer_rx(input);
                break;
            case RAW_DESCRIPTOR:
                raw_descriptor(input);
                break;
            case NOTIFY:
                m_mmio->notify(input.u8() % 4);
                break;
            case REINITIALIZE:
                initialize(input.u8() & 1);
                break;
            case PARENT_CONNECT:
                parent_connect(input);
                break;
            case PARENT_WRITE:
                parent_write(input);
                break;
            case RAW_INDEX:
                raw_index(input);
                break;
            }
            pump();
            collect();
        }
    }

private:
    template<typename T>
    static T must(ErrorOr<T> result)
    {
        require(!result.is_error());
        return result.release_value();
    }
    static void must(ErrorOr<void> result) { require(!result.is_error()); }

    void initialize(bool event_index)
    {
        // The driver's reset drops the device's connections; new rings.
        m_mmio->reset();
        pump();
        for (std::size_t queue = 0; queue < QUEUE_COUNT; ++queue) {
            auto& state = m_queues[queue];
            state = GuestQueue {};
            state.driver = std::make_unique<VirtqueueDriver>(m_memory, SHAPES[queue]);
            for (std::uint16_t index = 0; index < SHAPES[queue].size; ++index)
                state.free.push_back(index);
        }
        m_hostile = false;
        bool live = m_mmio->initialize(event_index ? VIRTIO_F_EVENT_IDX : 0,
            { { VSOCK_QUEUE_RX, m_queues[0].driver->layout() }, { VSOCK_QUEUE_TX, m_queues[1].driver->layout() },
                { VSOCK_QUEUE_EVENT, m_queues[2].driver->layout() } });
        require(live);
    }

    void pump()
    {
        for (int round = 0; round < MAX_PUMP_ROUNDS; ++round) {
            if (must(m_loop.wait(0)) == 0)
                break;
        }
        require(m_device->connection_count() <= MAX_CONNECTIONS);
    }

    // Puts a chain of the given pieces (readable first) on `queue`.
    bool add_chain(std::size_t queue, std::vector<ByteView> const& readable, std::vector<std::uint32_t> const& writable)
    {
        auto& state = m_queues[queue];
        std::size_t count = readable.size() + writable.size();
        if (count == 0 || count > state.free.size())
            return false;
        auto& driver = *state.driver;
        std::vector<std::pair<std::uint16_t, std::uint32_t>> chain;
        for (std::size_t i = 0; i < count; ++i) {
            chain.emplace_back(state.free.back(), 0);
            state.free.pop_back();
        }
        for (std::size_t i = 0; i < count; ++i) {
            auto index = chain[i].first;
            bool is_writable = i >= readable.size();
            auto length = is_writable ? writable[i - readable.size()] : static_cast<std::uint32_t>(readable[i].size());
            length = std::min(length, SHAPES[queue].slot_size);
            chain[i].second = length;
            auto buffer = must(m_memory.slice(driver.slot_address(index), length));
            if (!is_writable && length > 0)
                std::memcpy(buffer.data(), readable[i].data(), length);
            VirtqueueDriver::Descriptor descriptor;
            descriptor.address = driver.slot_address(index);
            descriptor.length = length;
            descriptor.flags = static_cast<std::uint16_t>(
                (is_writable ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0));
            descriptor.next = i + 1 < count ? chain[i + 1].first : 0;
            driver.write_descriptor(index, descriptor);
        }
        auto head = chain[0].first;
        state.outstanding[head] = std::move(chain);
        driver.set_available_entry(state.next_available++, head);
        driver.set_available_index(state.next_available);
        m_mmio->notify(static_cast<std::uint32_t>(queue));
        return true;
    }

    std::uint32_t parent_port(std::uint8_t choice)
    {
        if (choice < PARENT_PORTS.size())
            return PARENT_PORTS[choice];
        return m_newest_local_port;
    }

    void transmit(Input& input)
    {
        std::uint8_t shape = input.u8();
        packet::Header header;
        header.op = input.u8();
        header.src_port = GUEST_PORTS[input.u8() % GUEST_PORTS.size()];
        header.dst_port = parent_port(input.u8());
        header.flags = input.u8();
        header.buf_alloc = input.u32();
        header.fwd_cnt = input.u32();
        std::uint16_t payload_size = input.u16();
        std::uint8_t fill = input.u8();
        std::vector<std::size_t> cuts(input.u8() % 4);
        for (auto& cut : cuts)
            cut = input.u16();
        header.src_cid = (shape & 3) == 3 ? input.u64() : GUEST_CID;
        header.dst_cid = (shape & 4) ? input.u64() : address::PARENT_CID;
        header.type = (shape & 8) ? input.u16() : packet::TYPE_STREAM;
        header.len = (shape & 16) ? input.u32() : payload_size;

        auto raw = packet::encode_header(header);
        Bytes bytes(raw.begin(), raw.end());
        bytes.resize(bytes.size() + payload_size, fill);
        std::vector<ByteView> pieces;
        ByteView rest(bytes);
        for (auto cut : cuts) {
            cut = std::min(cut, rest.size());
            pieces.push_back(rest.first(cut));
            rest = rest.subspan(cut);
        }
        pieces.push_back(rest);
        add_chain(VSOCK_QUEUE_TX, pieces, {});
    }

    void offer_rx(Input& input)
    {
        std::size_t count = input.u8() % 4 + 1;
        for (std::size_t i = 0; i < count; ++i) {
            std::vector<std::uint32_t> pieces(input.u8() % 3 + 1);
            for (auto& piece : pieces)
                piece = input.u16();
            add_chain(VSOCK_QUEUE_RX, {}, pieces);
        }
    }

    void raw_descriptor(Input& input)
    {
        auto& state = m_queues[input.u8() % QUEUE_COUNT];
        auto& driver = *state.driver;
        std::uint16_t index = static_cast<std::uint16_t>(input.u8() % driver.size());
        VirtqueueDriver::Descriptor descriptor;
        std::uint32_t address = input.u32();
        // Mostly inside guest RAM (near its end as often as not), sometimes anywhere.
        descriptor.address
            = (address & 0x8000'0000) ? (std::uint64_t(address) << 12) : address % (MEMORY_SIZE + 0x1000);
        descriptor.length = input.u32();
        descriptor.flags = input.u8();
        descriptor.next = input.u8();
        driver.write_descriptor(index, descriptor);
        m_hostile = true;
        if (input.u8() & 1) {
            driver.set_available_entry(state.next_available++, index);
            driver.set_available_index(state.next_available);
            m_mmio->notify(static_cast<std::uint32_t>(&state - m_queues.data()));
        }
    }

    void raw_index(Input& input)
    {
        auto& state = m_queues[input.u8() % QUEUE_COUNT];
        state.next_available = input.u16();
        state.driver->set_available_index(state.next_available);
        m_hostile = true;
        m_mmio->notify(static_cast<std::uint32_t>(&state - m_queues.data()));
    }

    void parent_connect(Input& input)
    {
        std::uint32_t port = parent_port(input.u8());
        if (m_clients.size() >= MAX_CLIENTS)
            m_clients.erase(m_clients.begin());
        auto client = sys::unix_connect(work_directory() + "/vsock.sock");
        if (client.is_error())
            return;
        auto fd = client.release_value();
        must(sys::set_nonblocking(fd.get()));
        auto line = address::connect_request(port);
        [[maybe_unused]] auto sent = ::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL);
        m_clients.push_back(std::move(fd));
    }

    void parent_write(Input& input)
    {
        std::uint8_t which = input.u8();
        std::uint16_t size = input.u16();
        std::uint8_t fill = input.u8();
        if (m_clients.empty())
            return;
        auto at = m_clients.begin() + which % m_clients.size();
        if (size == 0) {
            m_clients.erase(at);
            return;
        }
        Bytes bytes(size, fill);
        [[maybe_unused]] auto sent = ::send(at->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        // What the device sent the parent is read and dropped.
        std::uint8_t sink[4096];
        while (::recv(at->get(), sink, sizeof(sink), MSG_DONTWAIT) > 0) { }
    }

    // Reads what the device put on the used rings, and checks it.
    void collect()
    {
        for (std::size_t queue = 0; queue < QUEUE_COUNT; ++queue) {
            auto& state = m_queues[queue];
            auto& driver = *state.driver;
            while (state.last_used != driver.used_index()) {
                auto entry = driver.used_entry(state.last_used++);
                auto found = state.outstanding.find(static_cast<std::uint16_t>(entry.id));
                if (found == state.outstanding.end()) {
                    require(m_hostile);
                    continue;
                }
                auto chain = std::move(found->second);
                state.outstanding.erase(found);
                for (auto const& [index, length] : chain)
                    state.free.push_back(index);
                if (m_hostile)
                    continue;
                require(queue != VSOCK_QUEUE_EVENT);
                if (queue == VSOCK_QUEUE_TX)
                    require(entry.length == 0);
                else
                    check_rx(driver, chain, entry.length);
            }
        }
    }

    void check_rx(VirtqueueDriver const& driver, std::vector<std::pair<std::uint16_t, std::uint32_t>> const& chain,
        std::uint32_t length)
    {
        Bytes written;
        for (auto const& [index, size] : chain) {
            auto buffer = must(m_memory.slice(driver.slot_address(index), size));
            written.insert(written.end(), buffer.begin(), buffer.end());
        }
        if (length == 0)
            return;
        require(length >= packet::HEADER_SIZE && length <= written.size());
        auto header = packet::decode_header(
            std::span<std::uint8_t const, packet::HEADER_SIZE>(written.data(), packet::HEADER_SIZE));
        require(header.src_cid == address::PARENT_CID && header.dst_cid == GUEST_CID);
        require(header.len == length - packet::HEADER_SIZE && header.len <= packet::MAX_PACKET_PAYLOAD);
        require(packet::is_known_op(header.op));
        require(header.type == packet::TYPE_STREAM || header.op == static_cast<std::uint16_t>(packet::Op::Rst));
        if (header.op == static_cast<std::uint16_t>(packet::Op::Request))
            m_newest_local_port = header.src_port;
    }

    kvm::GuestMemory m_memory;
    net::EventLoop m_loop;
    std::unique_ptr<VsockDevice> m_device;
    std::unique_ptr<MmioTransport> m_transport;
    std::optional<test::MmioDriver> m_mmio;
    std::array<GuestQueue, QUEUE_COUNT> m_queues;
    std::vector<UniqueFd> m_clients;
    std::uint32_t m_newest_local_port { 0 };
    bool m_hostile { false };
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    Input input(data, size);
    Run run;
    run.execute(input);
    return 0;
}
