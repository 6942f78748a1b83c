// The QTSM inside the VMM (vmm/qtsm.hpp): the platform registers, the
// instance id, the PKI rules and the one-channel vsock service, without KVM.
#include "../support/child.hpp"
#include "../support/must.hpp"
#include "../support/sanitizers.hpp"
#include "../support/temp_dir.hpp"
#include "../support/virtio_driver.hpp"

#include <qtbox/attest/verify.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/protocol.hpp>
#include <qtbox/vmm/qtsm.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/devices/virtio/vsock_packet.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vsock/address.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <regex>
#include <sched.h>
#include <sstream>
#include <thread>
#include <tuple>

using namespace qtbox;
using namespace qtbox::test;
namespace address = qtbox::vsock;

namespace {

constexpr std::string_view MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4\n";
constexpr std::string_view INSTANCE_ID = "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4";

eif::Measurements sample_measurements(bool signed_image)
{
    eif::Measurements measured;
    measured.pcr0 = eif::measure(as_bytes("kernel cmdline ramdisks"));
    measured.pcr1 = eif::measure(as_bytes("kernel cmdline ramdisk0"));
    measured.pcr2 = eif::measure(as_bytes("ramdisk1"));
    if (signed_image)
        measured.pcr8 = eif::measure(as_bytes("certificate"));
    return measured;
}

struct Fixture {
    Fixture()
    {
        directory.write("machine-id", MACHINE_ID, 0644);
        options.production = true;
        options.measurements = sample_measurements(true);
        options.machine_id_path = directory.file("machine-id");
        options.pki_directory = directory.file("pki");
    }
    void make_pki() { must(pki::init(options.pki_directory, false)); }

    TempDir directory;
    vmm::QtsmOptions options;
};

// The device's end of the QTSM's channel, made blocking for the test,
// which plays the device.
UniqueFd channel_of(vmm::QtsmService& service)
{
    auto fd = service.open_socket();
    REQUIRE(fd);
    int flags = ::fcntl(fd.get(), F_GETFL);
    REQUIRE(::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) == 0);
    return fd;
}

// One request through the channel, as the device would pass it on.
qtsm::Response ask(int channel, qtsm::Request const& request)
{
    must(qtsm::write_frame(channel, qtsm::encode_request(request)));
    auto answer = must(qtsm::read_frame(channel, qtsm::MAX_RESPONSE_SIZE));
    REQUIRE(answer);
    return must(qtsm::decode_response(*answer));
}

} // namespace

TEST_CASE("vmm qtsm: /etc/machine-id becomes a lowercase dashed UUID")
{
    CHECK(must(vmm::instance_id_from_machine_id(MACHINE_ID)) == INSTANCE_ID);
    CHECK(must(vmm::instance_id_from_machine_id(MACHINE_ID.substr(0, 32))) == INSTANCE_ID);
    for (std::string_view bad : { "", "\n", "3D1219C7C4C5404AAA1F6D2A48ADFDA4\n", "3d1219c7c4c5404aaa1f6d2a48adfda\n",
             "3d1219c7c4c5404aaa1f6d2a48adfda4a\n", "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4", "3d1219c7c4c5404aaa1f6d2a48adfdag" })
        require_error(vmm::instance_id_from_machine_id(bad), vmm::QtsmSetupError::InstanceId);
}

TEST_CASE("vmm qtsm: production registers come from the EIF, --agency and the instance id; debug ones are zeros")
{
    Fixture fixture;
    auto& options = fixture.options;
    options.agency = "payments";
    auto pcrs = vmm::platform_pcrs(options, std::string(INSTANCE_ID));
    CHECK(pcrs[0] == options.measurements->pcr0);
    CHECK(pcrs[1] == options.measurements->pcr1);
    CHECK(pcrs[2] == options.measurements->pcr2);
    CHECK(pcrs[3] == qtsm::measure(as_bytes("payments")));
    CHECK(pcrs[4] == qtsm::measure(as_bytes(INSTANCE_ID)));
    CHECK(pcrs[8] == *options.measurements->pcr8);
    for (std::size_t index : { 5, 6, 7, 9, 10, 11, 12, 13, 14, 15 })
        CHECK(pcrs[index] == qtsm::PcrValue {});

    // No agency: PCR3 stays zeros; unsigned: PCR8 too.
    options.agency.reset();
    options.measurements = sample_measurements(false);
    pcrs = vmm::platform_pcrs(options, std::string(INSTANCE_ID));
    CHECK(pcrs[3] == qtsm::PcrValue {});
    CHECK(pcrs[8] == qtsm::PcrValue {});

    qtsm::SystemPcrs zeros {};
    options.production = false;
    CHECK(vmm::platform_pcrs(options, std::string(INSTANCE_ID)) == zeros);
    options.production = true;
    options.measurements.reset(); // raw mode: nothing was measured
    CHECK(vmm::platform_pcrs(options, std::string(INSTANCE_ID)) == zeros);
}

TEST_CASE("vmm qtsm: a production enclave without a local PKI is refused with the hint")
{
    Fixture fixture;
    auto refused = vmm::create_qtsm(fixture.options);
    require_error(refused, vmm::QtsmSetupError::NoPki);
    CHECK(refused.error().message().find("qt pki init") != std::string::npos);

    // A PKI that is there but broken is an error in every mode.
    fixture.make_pki();
    REQUIRE(::chmod((fixture.options.pki_directory + "/parent.key").c_str(), 0644) == 0);
    fixture.options.production = false;
    auto broken = vmm::create_qtsm(fixture.options);
    REQUIRE(broken.is_error());
    CHECK(broken.error().is(pki::PkiError::Invalid));
}

TEST_CASE("vmm qtsm: a production enclave needs an instance id; a debug one makes one up")
{
    Fixture fixture;
    fixture.make_pki();
    fixture.options.machine_id_path = fixture.directory.file("missing");
    require_error(vmm::create_qtsm(fixture.options), vmm::QtsmSetupError::InstanceId);
    fixture.options.instance_id = "not a uuid!";
    require_error(vmm::create_qtsm(fixture.options), vmm::QtsmSetupError::InstanceId);

    fixture.options.instance_id.clear();
    fixture.options.production = false;
    auto setup = must(vmm::create_qtsm(fixture.options));
    std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\\.enc-[0-9a-f]{16}");
    CHECK(std::regex_match(setup.service->backend().module_id(), uuid));

    fixture.options.agency = std::string(vmm::MAX_AGENCY_SIZE + 1, 'a');
    require_error(vmm::create_qtsm(fixture.options), vmm::QtsmSetupError::Agency);
}

TEST_CASE("vmm qtsm: the enclave's document carries the measured registers and verifies against the PKI root")
{
    Fixture fixture;
    fixture.make_pki();
    fixture.options.agency = "payments";
    auto setup = must(vmm::create_qtsm(fixture.options));
    auto channel = channel_of(*setup.service);
    int session = channel.get();

    // PCR16 extended and locked; a second extend is refused.
    auto extended = ask(session, qtsm::ExtendPcrRequest { 16, to_bytes("app") });
    REQUIRE(std::holds_alternative<qtsm::ExtendPcrResponse>(extended));
    REQUIRE(std::holds_alternative<qtsm::LockPcrResponse>(ask(session, qtsm::LockPcrRequest { 16 })));
    auto again = ask(session, qtsm::ExtendPcrRequest { 16, to_bytes("more") });
    REQUIRE(std::holds_alternative<qtsm::ErrorResponse>(again));
    CHECK(std::get<qtsm::ErrorResponse>(again).code == qtsm::QtsmError::ReadOnlyIndex);
    // The platform registers are read-only for the enclave too.
    auto platform = ask(session, qtsm::ExtendPcrRequest { 0, to_bytes("x") });
    REQUIRE(std::holds_alternative<qtsm::ErrorResponse>(platform));
    CHECK(std::get<qtsm::ErrorResponse>(platform).code == qtsm::QtsmError::ReadOnlyIndex);

    Bytes nonce(16, 0x42);
    auto response = ask(session, qtsm::AttestationRequest { std::nullopt, nonce, std::nullopt });
    REQUIRE(std::holds_alternative<qtsm::AttestationResponse>(response));
    attest::VerifyOptions verify;
    verify.anchor.roots.push_back(must(pki::load(fixture.options.pki_directory)).root);
    verify.at = now_millis();
    auto verified = must(attest::verify_document(std::get<qtsm::AttestationResponse>(response).document, verify));
    auto const& measured = *fixture.options.measurements;
    auto bytes_of = [](qtsm::PcrValue const& value) { return Bytes(value.begin(), value.end()); };
    CHECK(*verified.document.pcr(0) == bytes_of(measured.pcr0));
    CHECK(*verified.document.pcr(3) == bytes_of(qtsm::measure(as_bytes("payments"))));
    CHECK(*verified.document.pcr(4) == bytes_of(qtsm::measure(as_bytes(INSTANCE_ID))));
    CHECK(*verified.document.pcr(8) == bytes_of(*measured.pcr8));
    CHECK(*verified.document.pcr(16) == std::get<qtsm::ExtendPcrResponse>(extended).data);
    CHECK(verified.document.nonce == nonce);
    CHECK(verified.document.module_id.starts_with(std::string(INSTANCE_ID) + ".enc-"));
}

TEST_CASE("vmm qtsm: a debug enclave without a PKI gets zeros and a throwaway root")
{
    Fixture fixture;
    fixture.options.production = false;
    std::vector<std::string> notices;
    fixture.options.notice = [&](Notice const& notice) { notices.push_back(notice.text); };
    auto setup = must(vmm::create_qtsm(fixture.options));
    // Nothing said at start (a guest that never uses the QTSM stays quiet);
    // once, when the guest connects.
    CHECK(setup.notes.empty());
    CHECK(notices.empty());
    auto channel = channel_of(*setup.service);
    int session = channel.get();
    REQUIRE(notices.size() == 1);
    CHECK(notices[0].find("PCR0-15 are zeros") != std::string::npos);
    CHECK(notices[0].find("throwaway root") != std::string::npos);
    auto described = ask(session, qtsm::DescribePcrRequest { 0 });
    REQUIRE(std::holds_alternative<qtsm::DescribePcrResponse>(described));
    CHECK(std::get<qtsm::DescribePcrResponse>(described).data == Bytes(qtsm::PCR_SIZE, 0));
    CHECK(std::get<qtsm::DescribePcrResponse>(described).lock);
}

TEST_CASE("vmm qtsm: one channel per boot; requests split or run together are answered in order")
{
    Fixture fixture;
    fixture.make_pki();
    std::vector<std::string> notices;
    fixture.options.notice = [&](Notice const& notice) { notices.push_back(notice.text); };
    auto setup = must(vmm::create_qtsm(fixture.options));
    CHECK(setup.service->answers_on_socket());
    auto channel = channel_of(*setup.service);
    CHECK(notices.empty()); // production: said at start (setup.notes)
    CHECK(!setup.service->open_socket());
    CHECK(!setup.service->open_socket());
    CHECK(notices.size() == 2);

    // Two requests in one write, the second split across three.
    auto first = qtsm::make_frame(qtsm::encode_request(qtsm::DescribePcrRequest { 4 }));
    auto second = qtsm::make_frame(qtsm::encode_request(qtsm::DescribeQtsmRequest {}));
    Bytes stream = first;
    stream.insert(stream.end(), second.begin(), second.begin() + 2);
    must(sys::write_all(channel.get(), stream));
    must(sys::write_all(channel.get(), ByteView(second).subspan(2, 5)));
    must(sys::write_all(channel.get(), ByteView(second).subspan(7)));

    std::vector<qtsm::Response> responses;
    for (int i = 0; i < 2; ++i) {
        auto frame = must(qtsm::read_frame(channel.get(), qtsm::MAX_RESPONSE_SIZE));
        REQUIRE(frame);
        responses.push_back(must(qtsm::decode_response(*frame)));
    }
    CHECK(std::holds_alternative<qtsm::DescribePcrResponse>(responses[0]));
    REQUIRE(std::holds_alternative<qtsm::DescribeQtsmResponse>(responses[1]));
    CHECK(std::get<qtsm::DescribeQtsmResponse>(responses[1]).module_id == setup.service->backend().module_id());
}

TEST_CASE("vmm qtsm: a zero or over-long length prefix closes the channel")
{
    Fixture fixture;
    fixture.make_pki();
    for (Bytes prefix : { Bytes { 0, 0, 0, 0 }, Bytes { 0, 0, 0x10, 0x01 } }) { // 4097 > MAX_REQUEST_SIZE
        auto setup = must(vmm::create_qtsm(fixture.options));
        auto channel = channel_of(*setup.service);
        must(sys::write_all(channel.get(), prefix));
        // No answer: the end of the stream.
        CHECK(!must(qtsm::read_frame(channel.get(), qtsm::MAX_RESPONSE_SIZE)));
    }
}

TEST_CASE("vmm qtsm: the service ends its thread when it goes, whether the channel was used or not")
{
    Fixture fixture;
    fixture.make_pki();
    // Never connected: the destructor wakes the thread in its first read.
    (void)must(vmm::create_qtsm(fixture.options));
    // Connected, and the device's end still open.
    auto setup = must(vmm::create_qtsm(fixture.options));
    auto channel = channel_of(*setup.service);
    CHECK(std::holds_alternative<qtsm::GetRandomResponse>(ask(channel.get(), qtsm::GetRandomRequest {})));
    setup.service.reset();
    CHECK(!must(qtsm::read_frame(channel.get(), qtsm::MAX_RESPONSE_SIZE)));
}

// /proc/self/task/<tid> of the calling process's thread named `name`.
std::optional<std::filesystem::path> task_of_thread(std::string const& name)
{
    for (auto const& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string line;
        if (std::getline(comm, line) && line == name)
            return task.path();
    }
    return std::nullopt;
}

// The Seccomp: field of the thread named `name`: 2 when it runs under a
// filter; -1 when there is no such thread.
int seccomp_mode_of_thread(std::string const& name)
{
    auto task = task_of_thread(name);
    if (!task)
        return -1;
    std::ifstream status(*task / "status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("Seccomp:"))
            return std::stoi(line.substr(8));
    }
    return -1;
}

// The scheduling policy (field 41 of its stat) of the thread named `name`;
// -1 when there is no such thread.
int scheduling_policy_of_thread(std::string const& name)
{
    auto task = task_of_thread(name);
    if (!task)
        return -1;
    std::ifstream stat(*task / "stat");
    std::string line;
    std::getline(stat, line);
    // After "pid (comm) ", the fields from the third on.
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int index = 3; index <= 41 && fields >> field; ++index) {
        if (index == 41)
            return std::stoi(field);
    }
    return -1;
}

TEST_CASE("vmm qtsm: the QTSM's work, the hourly leaf included, runs on its own thread under its seccomp filter"
    * doctest::skip(SANITIZED))
{
    // vmm answers the QTSM on a thread of its own, under that thread's
    // allow-list (vmm/seccomp.hpp install_qtsm_filter): a system call the
    // signing or the leaf rotation needs and the list lacks would kill the
    // VMM an hour in.
    Fixture fixture;
    fixture.make_pki();
    auto outcome = run_in_child([&]() -> int {
        auto now = std::make_shared<UnixMillis>(now_millis());
        qtsm::BackendConfig config;
        config.module_id = must(qtsm::make_module_id(INSTANCE_ID));
        config.clock = [now] { return *now; };
        std::shared_ptr<qtsm::Backend> backend
            = must(qtsm::Backend::create(config, must(pki::load(fixture.options.pki_directory))));
        auto service = vmm::QtsmService::create(backend, {}, {}, true);
        if (service.is_error())
            return 2;
        if (seccomp_mode_of_thread("qtsm") != 2 || seccomp_mode_of_thread("qtsm-nonces") != 2)
            return 6;
        if (scheduling_policy_of_thread("qtsm-nonces") != SCHED_IDLE)
            return 8;
        auto channel = channel_of(*service.value());
        // No Attestation yet: no nonce is prepared (an enclave that never
        // asks for a document costs no CPU).
        (void)ask(channel.get(), qtsm::GetRandomRequest {});
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (backend->prepared_nonces() != 0)
            return 9;
        for (int hour = 0; hour < 3; ++hour) {
            auto document = ask(channel.get(), qtsm::AttestationRequest { std::nullopt, Bytes(32, 1), std::nullopt });
            if (!std::holds_alternative<qtsm::AttestationResponse>(document))
                return 3;
            auto random = ask(channel.get(), qtsm::GetRandomRequest {});
            if (!std::holds_alternative<qtsm::GetRandomResponse>(random))
                return 4;
            if (!std::holds_alternative<qtsm::ExtendPcrResponse>(
                    ask(channel.get(), qtsm::ExtendPcrRequest { 17, Bytes { 1 } })))
                return 5;
            // The nonce thread fills its pool under its own filter (a call
            // it lacks would have killed the process here).
            for (int wait = 0; wait < 1000 && backend->prepared_nonces() < qtsm::Backend::NONCE_POOL_SIZE; ++wait)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            if (backend->prepared_nonces() != qtsm::Backend::NONCE_POOL_SIZE)
                return 10;
            *now += pki::LEAF_ROTATION_MS + 1000; // the next document needs a new leaf
        }
        // The thread's end of a framing error, under the filter too.
        must(sys::write_all(channel.get(), Bytes { 0, 0, 0, 0 }));
        if (must(qtsm::read_frame(channel.get(), qtsm::MAX_RESPONSE_SIZE)))
            return 7;
        service.value().reset();
        return 0;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}

namespace {

// A document's clock that stops, once armed, until the test lets it go:
// the QTSM is then busy making that document for as long as the test
// wants. It records the thread it ran on.
struct Gate {
    std::mutex mutex;
    std::condition_variable changed;
    bool armed { false };
    bool entered { false };
    bool released { false };
    std::thread::id thread;

    UnixMillis hold()
    {
        std::unique_lock lock(mutex);
        if (armed && !entered) {
            entered = true;
            thread = std::this_thread::get_id();
            changed.notify_all();
            // Bounded, so that code which makes documents on the test's
            // own thread (the event loop's) fails instead of hanging.
            changed.wait_for(lock, std::chrono::seconds(10), [this] { return released; });
        }
        return now_millis();
    }
    void arm()
    {
        std::lock_guard lock(mutex);
        armed = true;
    }
    bool wait_entered()
    {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, std::chrono::seconds(30), [this] { return entered; });
    }
    void release()
    {
        std::lock_guard lock(mutex);
        released = true;
        changed.notify_all();
    }
};

constexpr std::uint64_t GUEST_CID = 5;

// The guest's side of a vsock device that serves the heartbeat and the
// QTSM (tests/devices/test_vsock.cpp drives the device the same way).
class Guest {
public:
    explicit Guest(std::shared_ptr<devices::virtio::VsockService> qtsm)
        : memory(test::make_guest_memory(16 << 20))
        , loop(must(net::EventLoop::create()))
        , rx(memory, { .size = 64, .ring_address = 0x1000, .buffer_address = 0x100000, .slot_size = 0x11000 })
        , tx(memory, { .size = 64, .ring_address = 0x4000, .buffer_address = 0x600000, .slot_size = 0x11000 })
        , events(memory, { .size = 8, .ring_address = 0x8000, .buffer_address = 0xB00000, .slot_size = 64 })
    {
        using namespace devices::virtio;
        irq = must(sys::eventfd());
        VsockConfig config;
        config.guest_cid = GUEST_CID;
        config.services[address::HEARTBEAT_PORT] = std::make_shared<HeartbeatService>([] { return 1; }, [] { });
        config.services[address::QTSM_PORT] = std::move(qtsm);
        device = must(VsockDevice::create(std::move(config), loop));
        transport = must(MmioTransport::create(*device, memory, irq.get()));
        must(device->attach(*transport));
        mmio.emplace(*transport);
        REQUIRE(mmio->initialize(0,
            { { VSOCK_QUEUE_RX, rx.layout() }, { VSOCK_QUEUE_TX, tx.layout() },
                { VSOCK_QUEUE_EVENT, events.layout() } }));
        pump();
    }
    ~Guest() { device.reset(); }

    void pump(int timeout_ms = 0)
    {
        for (int round = 0; round < 1000; ++round) {
            if (must(loop.wait(round == 0 ? timeout_ms : 0)) == 0)
                return;
        }
    }

    void send(devices::virtio::vsock::Op op, std::uint32_t port, ByteView payload = {})
    {
        using namespace devices::virtio::vsock;
        Header header;
        header.src_cid = GUEST_CID;
        header.dst_cid = address::PARENT_CID;
        header.src_port = 1000 + port;
        header.dst_port = port;
        header.len = static_cast<std::uint32_t>(payload.size());
        header.type = TYPE_STREAM;
        header.op = static_cast<std::uint16_t>(op);
        header.buf_alloc = 256 * 1024;
        header.fwd_cnt = 0;
        auto raw = encode_header(header);
        Bytes bytes(raw.begin(), raw.end());
        bytes.insert(bytes.end(), payload.begin(), payload.end());
        tx.send({ ByteView(bytes) }, {});
        mmio->notify(devices::virtio::VSOCK_QUEUE_TX);
        pump();
        while (tx.take_used()) { }
    }

    // Offers RX buffers and returns what came: (port, op, payload).
    std::vector<std::tuple<std::uint32_t, devices::virtio::vsock::Op, Bytes>> receive(int timeout_ms = 0)
    {
        using namespace devices::virtio::vsock;
        // At most 8 buffers out at a time (the queue holds 64); a notice
        // only for new ones, so that pump() waits for the device's own
        // events (a QTSM answer) up to `timeout_ms`.
        if (offered < 8) {
            for (; offered < 8; ++offered)
                rx.send({}, { HEADER_SIZE, 4096 });
            mmio->notify(devices::virtio::VSOCK_QUEUE_RX);
        }
        pump(timeout_ms);
        std::vector<std::tuple<std::uint32_t, Op, Bytes>> packets;
        while (auto done = rx.take_used()) {
            --offered;
            if (done->length < HEADER_SIZE)
                continue;
            auto header = decode_header(std::span<std::uint8_t const, HEADER_SIZE>(done->written.data(), HEADER_SIZE));
            packets.emplace_back(header.src_port, static_cast<Op>(header.op),
                Bytes(done->written.begin() + HEADER_SIZE, done->written.end()));
        }
        return packets;
    }

    kvm::GuestMemory memory;
    net::EventLoop loop;
    test::VirtqueueDriver rx;
    test::VirtqueueDriver tx;
    test::VirtqueueDriver events;
    UniqueFd irq;
    std::unique_ptr<devices::virtio::VsockDevice> device;
    std::unique_ptr<devices::virtio::MmioTransport> transport;
    std::optional<test::MmioDriver> mmio;
    int offered { 0 };
};

} // namespace

TEST_CASE("vmm qtsm: while a document is being made, the vsock device keeps serving the guest")
{
    // Through the real device: the QTSM's work must not hold the event
    // loop (here, the test's own thread, which pumps it), or nothing else
    // moves for the guest while a document is signed.
    using devices::virtio::vsock::Op;
    Fixture fixture;
    fixture.make_pki();
    auto gate = std::make_shared<Gate>();
    qtsm::BackendConfig config;
    config.module_id = must(qtsm::make_module_id(INSTANCE_ID));
    config.clock = [gate] { return gate->hold(); };
    std::shared_ptr<qtsm::Backend> backend
        = must(qtsm::Backend::create(config, must(pki::load(fixture.options.pki_directory))));
    auto service = must(vmm::QtsmService::create(backend, {}));
    Guest guest(service);

    guest.send(Op::Request, address::QTSM_PORT);
    auto accepted = guest.receive();
    REQUIRE(accepted.size() == 1);
    CHECK(std::get<1>(accepted[0]) == Op::Response);

    gate->arm();
    Bytes nonce(16, 0x5a);
    guest.send(Op::Rw, address::QTSM_PORT,
        qtsm::make_frame(qtsm::encode_request(qtsm::AttestationRequest { std::nullopt, nonce, std::nullopt })));
    REQUIRE(gate->wait_entered());
    CHECK(gate->thread != std::this_thread::get_id());

    // The document is on hold; the heartbeat is answered meanwhile.
    guest.send(Op::Request, address::HEARTBEAT_PORT);
    guest.send(Op::Rw, address::HEARTBEAT_PORT, Bytes { devices::virtio::HeartbeatService::MAGIC });
    bool heartbeat = false;
    for (auto const& [port, op, payload] : guest.receive())
        heartbeat = heartbeat || (port == address::HEARTBEAT_PORT && op == Op::Rw && payload.size() == 9);
    CHECK(heartbeat);

    // Let the document go: it reaches the guest whole.
    gate->release();
    qtsm::FrameReader reader(qtsm::MAX_RESPONSE_SIZE);
    std::optional<Bytes> answer;
    for (int round = 0; round < 200 && !answer; ++round) {
        for (auto const& [port, op, payload] : guest.receive(100)) {
            if (port != address::QTSM_PORT || op != Op::Rw)
                continue;
            ByteView left(payload);
            while (!left.empty() && !answer) {
                auto space = reader.space();
                auto count = std::min(space.size(), left.size());
                std::copy_n(left.begin(), count, space.begin());
                left = left.subspan(count);
                if (must(reader.commit(count)))
                    answer = reader.take();
            }
        }
    }
    REQUIRE(answer);
    auto response = must(qtsm::decode_response(*answer));
    REQUIRE(std::holds_alternative<qtsm::AttestationResponse>(response));
    CHECK(std::search(std::get<qtsm::AttestationResponse>(response).document.begin(),
              std::get<qtsm::AttestationResponse>(response).document.end(), nonce.begin(), nonce.end())
        != std::get<qtsm::AttestationResponse>(response).document.end());
}
