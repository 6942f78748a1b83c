// The QTSM inside the VMM (vmm/qtsm.hpp): the platform registers, the
// instance id, the PKI rules and the one-channel vsock service, without KVM.
#include "../support/child.hpp"
#include "../support/must.hpp"
#include "../support/sanitizers.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/attest/verify.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/protocol.hpp>
#include <qtbox/vmm/qtsm.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <unistd.h>

#include <doctest/doctest.h>

#include <regex>

using namespace qtbox;
using namespace qtbox::test;

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

// One request through a session, as the guest's bytes would arrive.
qtsm::Response ask(devices::virtio::VsockSession& session, qtsm::Request const& request)
{
    auto answer = must(session.on_data(qtsm::make_frame(qtsm::encode_request(request))));
    REQUIRE(answer.size() > qtsm::FRAME_HEADER_SIZE);
    return must(qtsm::decode_response(ByteView(answer).subspan(qtsm::FRAME_HEADER_SIZE)));
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
    auto session = setup.service->open();
    REQUIRE(session);

    // PCR16 extended and locked; a second extend is refused.
    auto extended = ask(*session, qtsm::ExtendPcrRequest { 16, to_bytes("app") });
    REQUIRE(std::holds_alternative<qtsm::ExtendPcrResponse>(extended));
    REQUIRE(std::holds_alternative<qtsm::LockPcrResponse>(ask(*session, qtsm::LockPcrRequest { 16 })));
    auto again = ask(*session, qtsm::ExtendPcrRequest { 16, to_bytes("more") });
    REQUIRE(std::holds_alternative<qtsm::ErrorResponse>(again));
    CHECK(std::get<qtsm::ErrorResponse>(again).code == qtsm::QtsmError::ReadOnlyIndex);
    // The platform registers are read-only for the enclave too.
    auto platform = ask(*session, qtsm::ExtendPcrRequest { 0, to_bytes("x") });
    REQUIRE(std::holds_alternative<qtsm::ErrorResponse>(platform));
    CHECK(std::get<qtsm::ErrorResponse>(platform).code == qtsm::QtsmError::ReadOnlyIndex);

    Bytes nonce(16, 0x42);
    auto response = ask(*session, qtsm::AttestationRequest { std::nullopt, nonce, std::nullopt });
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
    auto session = setup.service->open();
    REQUIRE(session);
    REQUIRE(notices.size() == 1);
    CHECK(notices[0].find("PCR0-15 are zeros") != std::string::npos);
    CHECK(notices[0].find("throwaway root") != std::string::npos);
    auto described = ask(*session, qtsm::DescribePcrRequest { 0 });
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
    auto session = setup.service->open();
    REQUIRE(session);
    CHECK(notices.empty()); // production: said at start (setup.notes)
    CHECK(setup.service->open() == nullptr);
    CHECK(setup.service->open() == nullptr);
    CHECK(notices.size() == 2);

    // Two requests in one write, the second split across three.
    auto first = qtsm::make_frame(qtsm::encode_request(qtsm::DescribePcrRequest { 4 }));
    auto second = qtsm::make_frame(qtsm::encode_request(qtsm::DescribeQtsmRequest {}));
    Bytes stream = first;
    stream.insert(stream.end(), second.begin(), second.begin() + 2);
    auto answers = must(session->on_data(stream));
    CHECK(must(session->on_data(ByteView(second).subspan(2, 5))).empty());
    auto rest = must(session->on_data(ByteView(second).subspan(7)));
    answers.insert(answers.end(), rest.begin(), rest.end());

    qtsm::FrameReader reader(qtsm::MAX_RESPONSE_SIZE);
    std::vector<qtsm::Response> responses;
    ByteView left(answers);
    while (!left.empty()) {
        auto space = reader.space();
        auto count = std::min(space.size(), left.size());
        std::copy_n(left.begin(), count, space.begin());
        left = left.subspan(count);
        if (must(reader.commit(count)))
            responses.push_back(must(qtsm::decode_response(reader.take())));
    }
    REQUIRE(responses.size() == 2);
    CHECK(std::holds_alternative<qtsm::DescribePcrResponse>(responses[0]));
    REQUIRE(std::holds_alternative<qtsm::DescribeQtsmResponse>(responses[1]));
    CHECK(std::get<qtsm::DescribeQtsmResponse>(responses[1]).module_id == setup.service->backend().module_id());
}

TEST_CASE("vmm qtsm: a zero or over-long length prefix resets the channel")
{
    Fixture fixture;
    fixture.make_pki();
    auto setup = must(vmm::create_qtsm(fixture.options));
    auto session = setup.service->open();
    REQUIRE(session);
    CHECK(session->on_data(Bytes { 0, 0, 0, 0 }).is_error());
    auto other = must(vmm::create_qtsm(fixture.options)).service->open();
    REQUIRE(other);
    CHECK(other->on_data(Bytes { 0, 0, 0x10, 0x01 }).is_error()); // 4097 > MAX_REQUEST_SIZE
}

TEST_CASE("vmm qtsm: the QTSM's work, the hourly leaf included, runs under the event loop's seccomp filter"
    * doctest::skip(SANITIZED))
{
    // vmm answers the QTSM on its event-loop thread, under that thread's
    // allow-list (vmm/seccomp.hpp): a system call the signing or the leaf
    // rotation needs and the list lacks would kill the VMM an hour in.
    Fixture fixture;
    fixture.make_pki();
    auto now = std::make_shared<UnixMillis>(now_millis());
    qtsm::BackendConfig config;
    config.module_id = must(qtsm::make_module_id(INSTANCE_ID));
    config.clock = [now] { return *now; };
    std::shared_ptr<qtsm::Backend> backend = must(qtsm::Backend::create(config, must(pki::load(fixture.options.pki_directory))));
    vmm::QtsmService service(backend, {});
    auto session = service.open();
    REQUIRE(session);

    auto outcome = run_in_child([&]() -> int {
        int const write_fds[] = { STDERR_FILENO };
        if (vmm::install_event_loop_filter(write_fds).is_error())
            return 2;
        for (int hour = 0; hour < 3; ++hour) {
            auto document = ask(*session, qtsm::AttestationRequest { std::nullopt, Bytes(32, 1), std::nullopt });
            if (!std::holds_alternative<qtsm::AttestationResponse>(document))
                return 3;
            auto random = ask(*session, qtsm::GetRandomRequest {});
            if (!std::holds_alternative<qtsm::GetRandomResponse>(random))
                return 4;
            if (!std::holds_alternative<qtsm::ExtendPcrResponse>(ask(*session, qtsm::ExtendPcrRequest { 17, Bytes { 1 } })))
                return 5;
            *now += pki::LEAF_ROTATION_MS + 1000; // the next document needs a new leaf
        }
        return 0;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}
