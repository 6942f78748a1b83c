#include "support.hpp"

#include <qtbox/attest/verify.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/encoder.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/qtsm/backend.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <doctest/doctest.h>

#include <regex>
#include <sys/socket.h>
#include <thread>

using namespace qtbox;
using namespace qtbox::test;
using qtsm::QtsmError;

namespace {

attest::VerifyOptions verify_options(TestPki const& pki, UnixMillis at)
{
    attest::VerifyOptions options;
    options.anchor.roots.push_back(pki.authority().root);
    options.at = at;
    return options;
}

qtsm::Response call(qtsm::Backend& backend, qtsm::Request const& request)
{
    return must(qtsm::decode_response(backend.handle(qtsm::encode_request(request))));
}

QtsmError error_of(qtsm::Response const& response)
{
    REQUIRE(std::holds_alternative<qtsm::ErrorResponse>(response));
    return std::get<qtsm::ErrorResponse>(response).code;
}

Bytes make_document(qtsm::Backend& backend, qtsm::AttestationRequest const& request = {})
{
    auto response = call(backend, request);
    REQUIRE(std::holds_alternative<qtsm::AttestationResponse>(response));
    return std::get<qtsm::AttestationResponse>(response).document;
}

std::vector<std::string> payload_keys(cbor::Value const& payload)
{
    std::vector<std::string> keys;
    for (auto const& entry : payload.as_map())
        keys.push_back(std::string(entry.key.as_text()));
    return keys;
}

std::vector<std::uint64_t> pcr_indices(cbor::Value const& payload)
{
    std::vector<std::uint64_t> indices;
    for (auto const& entry : payload.find("pcrs")->as_map())
        indices.push_back(entry.key.as_unsigned());
    return indices;
}

} // namespace

TEST_CASE("qtsm: module ids are <instance-id>.enc-<16 hex>")
{
    auto id = must(qtsm::make_module_id("4662b7a3-7898-46c9-a6c5-20e9025e50bc"));
    CHECK(std::regex_match(id, std::regex("4662b7a3-7898-46c9-a6c5-20e9025e50bc\\.enc-[0-9a-f]{16}")));
    CHECK(id != must(qtsm::make_module_id("4662b7a3-7898-46c9-a6c5-20e9025e50bc")));
    CHECK(qtsm::make_module_id("").is_error());
    CHECK(qtsm::make_module_id("a/b").is_error());
    CHECK(qtsm::make_module_id(std::string(44, 'a')).is_error());
}

TEST_CASE("qtsm: a document has the docs/FORMATS.md §4 layout and verifies against the PKI root")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    must(backend->pcrs().extend(16, as_bytes("app")));
    qtsm::AttestationRequest request { Bytes { 1, 2, 3 }, Bytes(32, 0x5a), std::nullopt };
    auto document = make_document(*backend, request);
    CHECK(document.size() <= qtsm::MAX_DOCUMENT_SIZE);

    // Envelope: untagged 4-array, protected a1 01 38 22, unprotected {}.
    CHECK(document[0] == 0x84);
    auto sign1 = must(cose::parse_sign1(document));
    CHECK_FALSE(sign1.tagged);
    CHECK(hex_encode(sign1.protected_header) == "a1013822");
    CHECK(sign1.unprotected.is_map());
    CHECK(sign1.unprotected.as_map().empty());
    CHECK(sign1.signature.size() == 96);

    auto payload = must(cbor::decode(sign1.payload));
    std::vector<std::string> expected_keys { "module_id", "timestamp", "digest", "pcrs", "certificate", "cabundle",
        "user_data", "nonce", "public_key" };
    CHECK(payload_keys(payload) == expected_keys);
    CHECK(payload.find("module_id")->as_text() == backend->module_id());
    CHECK(payload.find("timestamp")->as_unsigned() == static_cast<std::uint64_t>(T0));
    CHECK(payload.find("digest")->as_text() == "SHA384");
    // The timestamp is always the 8-byte encoding: "timestamp" then 1b.
    auto timestamp_key = cbor::encode(cbor::Value::text_string("timestamp"));
    auto at = std::search(sign1.payload.begin(), sign1.payload.end(), timestamp_key.begin(), timestamp_key.end());
    REQUIRE(at != sign1.payload.end());
    CHECK(*(at + static_cast<std::ptrdiff_t>(timestamp_key.size())) == 0x1b);
    // PCRs 0..15 always, plus the extended 16; untouched 17 is absent.
    std::vector<std::uint64_t> expected_pcrs { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    CHECK(pcr_indices(payload) == expected_pcrs);
    CHECK(payload.find("pcrs")->find_unsigned(16)->as_bytes().size() == 48);
    CHECK(payload.find("cabundle")->as_array().size() == 2);
    auto root_in_document = payload.find("cabundle")->as_array()[0].as_bytes();
    auto authority = pki.authority();
    auto root = authority.root.der();
    CHECK(Bytes(root_in_document.begin(), root_in_document.end()) == Bytes(root.begin(), root.end()));
    CHECK(payload.find("user_data")->as_bytes().size() == 3);
    CHECK(payload.find("nonce")->as_bytes().size() == 32);
    // Absent optionals are empty byte strings, not null.
    CHECK(payload.find("public_key")->is_bytes());
    CHECK(payload.find("public_key")->as_bytes().empty());

    auto verified = must(attest::verify_document(document, verify_options(pki, T0)));
    CHECK(verified.signature_order == cose::SignatureOrder::Rfc9052);
    CHECK(verified.document.module_id == backend->module_id());
    auto pcr16 = must(backend->pcrs().describe(16)).value;
    CHECK(*verified.document.pcr(16) == Bytes(pcr16.begin(), pcr16.end()));
}

TEST_CASE("qtsm: the qingtian signature order verifies and is reported as such")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock, cose::SignatureOrder::QingTian);
    auto document = make_document(*backend);
    auto verified = must(attest::verify_document(document, verify_options(pki, T0)));
    CHECK(verified.signature_order == cose::SignatureOrder::QingTian);
    // Reversing the halves back gives an RFC 9052 signature of the same message.
    auto sign1 = must(cose::parse_sign1(document));
    auto leaf_key = verified.leaf.public_key();
    must(leaf_key.verify(cose::sig_structure(sign1.protected_header, sign1.payload),
        cose::reverse_signature_halves(sign1.signature)));
}

TEST_CASE("qtsm: a locked user PCR appears in documents even when zero")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    must(backend->pcrs().lock(std::size_t(30)));
    auto sign1 = must(cose::parse_sign1(make_document(*backend)));
    auto indices = pcr_indices(must(cbor::decode(sign1.payload)));
    CHECK(indices.size() == 17);
    CHECK(indices.back() == 30);
}

TEST_CASE("qtsm: the backend answers bad requests with QingTian error names")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    CHECK(error_of(call(*backend, qtsm::ExtendPcrRequest { 3, { 1 } })) == QtsmError::ReadOnlyIndex);
    CHECK(error_of(call(*backend, qtsm::ExtendPcrRequest { 32, { 1 } })) == QtsmError::InvalidIndex);
    CHECK(error_of(call(*backend, qtsm::DescribePcrRequest { 32 })) == QtsmError::InvalidIndex);
    CHECK(error_of(call(*backend, qtsm::LockPcrRequest { 0 })) == QtsmError::ReadOnlyIndex);
    CHECK(error_of(call(*backend, qtsm::LockPcrsRequest { { 16, 2 } })) == QtsmError::ReadOnlyIndex);
    CHECK(error_of(call(*backend, qtsm::ExtendPcrRequest { 16, {} })) == QtsmError::InvalidArgument);
    CHECK(error_of(call(*backend, qtsm::AttestationRequest { Bytes(513, 0), {}, {} })) == QtsmError::InputTooLarge);
    CHECK(hex_encode(backend->handle(Bytes { 0xff })) == hex_encode(qtsm::encode_error(QtsmError::InvalidArgument)));
    std::string diagnostic;
    backend->handle(qtsm::encode_request(qtsm::ExtendPcrRequest { 16, {} }), &diagnostic);
    CHECK(diagnostic.find("ExtendPCR") != std::string::npos);

    must(backend->pcrs().extend(16, as_bytes("x")));
    CHECK(std::holds_alternative<qtsm::LockPcrResponse>(call(*backend, qtsm::LockPcrRequest { 16 })));
    CHECK(error_of(call(*backend, qtsm::ExtendPcrRequest { 16, { 1 } })) == QtsmError::ReadOnlyIndex);
    auto described = std::get<qtsm::DescribePcrResponse>(call(*backend, qtsm::DescribePcrRequest { 16 }));
    CHECK(described.lock);
}

TEST_CASE("qtsm: DescribeQTSM and GetRandom")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    must(backend->pcrs().lock(std::size_t(20)));
    auto description = std::get<qtsm::DescribeQtsmResponse>(call(*backend, qtsm::DescribeQtsmRequest {}));
    CHECK(description.module_id == backend->module_id());
    CHECK(description.max_pcrs == 32);
    CHECK(description.digest == "SHA384");
    CHECK(description.version_major == qtsm::VERSION_MAJOR);
    CHECK(description.locked_pcrs.size() == 17);
    CHECK(description.locked_pcrs.back() == 20);
    auto first = std::get<qtsm::GetRandomResponse>(call(*backend, qtsm::GetRandomRequest {})).random;
    auto second = std::get<qtsm::GetRandomResponse>(call(*backend, qtsm::GetRandomRequest {})).random;
    CHECK(first.size() == qtsm::RANDOM_SIZE);
    CHECK(first.size() >= 32);
    CHECK(first != second);
}

TEST_CASE("qtsm: serve answers malformed frames and keeps the connection")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    UniqueFd client(fds[0]);
    UniqueFd server(fds[1]);
    ErrorOr<void> served;
    std::thread thread([&] { served = backend->serve(server.get()); });

    must(qtsm::write_frame(client.get(), Bytes { 0xa1, 0x61 })); // truncated map
    CHECK(*must(qtsm::read_frame(client.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InvalidArgument));
    must(sys::write_all(client.get(), Bytes { 0, 0, 0, 0 })); // empty frame
    CHECK(*must(qtsm::read_frame(client.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InvalidArgument));
    must(qtsm::write_frame(client.get(), qtsm::encode_request(qtsm::DescribePcrRequest { 4 })));
    auto response = must(qtsm::decode_response(*must(qtsm::read_frame(client.get(), qtsm::MAX_RESPONSE_SIZE))));
    CHECK(std::get<qtsm::DescribePcrResponse>(response).lock);
    // An over-long prefix is answered, then the connection ends.
    must(sys::write_all(client.get(), Bytes { 0, 0, 0x10, 0x01 }));
    CHECK(*must(qtsm::read_frame(client.get(), qtsm::MAX_RESPONSE_SIZE)) == qtsm::encode_error(QtsmError::InputTooLarge));
    thread.join();
    require_error(served, qtsm::FrameError::TooLarge);
}

TEST_CASE("qtsm: the leaf rotates after 1 h; documents made across the rotation verify")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    auto certificate_of = [](Bytes const& document) {
        auto sign1 = must(cose::parse_sign1(document));
        auto payload = must(cbor::decode(sign1.payload));
        auto der = payload.find("certificate")->as_bytes();
        return Bytes(der.begin(), der.end());
    };
    auto first = make_document(*backend);
    *clock.now = T0 + HOUR - SECOND;
    auto before = make_document(*backend);
    *clock.now = T0 + HOUR;
    auto after = make_document(*backend);
    CHECK(certificate_of(first) == certificate_of(before));
    CHECK(certificate_of(after) != certificate_of(before));
    must(attest::verify_document(before, verify_options(pki, T0 + HOUR - SECOND)));
    must(attest::verify_document(after, verify_options(pki, T0 + HOUR)));
    // The leaf that signed `before` is still valid at T0 + 3 h, not 1 s later.
    must(attest::verify_document(before, verify_options(pki, T0 + 3 * HOUR)));
    auto expired = attest::verify_document(before, verify_options(pki, T0 + 3 * HOUR + SECOND));
    require_error(expired, attest::VerifyError::Time);
}

TEST_CASE("qtsm: a document signed at 3 h + 1 s with a leaf issued at 0 fails with Time")
{
    TestPki pki;
    auto authority = pki.authority();
    auto module_id = must(qtsm::make_module_id("instance"));
    auto leaf = must(pki::issue_leaf(authority, module_id, T0));
    qtsm::PcrBank bank(qtsm::SystemPcrs {});
    auto document = must(qtsm::assemble_document(module_id, T0 + 3 * HOUR + SECOND,
        qtsm::PcrBank::document_pcrs(bank.snapshot()), *leaf, {}, cose::SignatureOrder::Rfc9052));
    require_error(attest::verify_document(document, verify_options(pki, T0 + 3 * HOUR + SECOND)), attest::VerifyError::Time);
    must(attest::verify_document(document, verify_options(pki, T0 + 3 * HOUR)));
}

TEST_CASE("qtsm: prepared nonces fill a pool of 8; documents signed with them verify, across the leaf rotation")
{
    TestPki pki;
    TestClock clock;
    auto backend = make_backend(pki, clock);
    CHECK(backend->prepared_nonces() == 0);
    for (std::size_t i = 0; i < qtsm::Backend::NONCE_POOL_SIZE; ++i)
        CHECK(must(backend->prepare_nonce()));
    CHECK_FALSE(must(backend->prepare_nonce()));
    CHECK(backend->prepared_nonces() == qtsm::Backend::NONCE_POOL_SIZE);

    auto signature_r = [](Bytes const& document) {
        auto sign1 = must(cose::parse_sign1(document));
        return Bytes(sign1.signature.begin(), sign1.signature.begin() + 48);
    };
    std::vector<Bytes> rs;
    for (std::size_t i = 0; i < qtsm::Backend::NONCE_POOL_SIZE; ++i) {
        CAPTURE(i);
        qtsm::AttestationRequest request;
        request.nonce = Bytes { 0x42, static_cast<std::uint8_t>(i) };
        // Half of them after the hourly rotation: a nonce prepared with the
        // old leaf signs for the new one.
        if (i == qtsm::Backend::NONCE_POOL_SIZE / 2)
            *clock.now = T0 + HOUR;
        auto document = make_document(*backend, request);
        CHECK(backend->prepared_nonces() == qtsm::Backend::NONCE_POOL_SIZE - 1 - i);
        auto verified = must(attest::verify_document(document, verify_options(pki, *clock.now)));
        CHECK(verified.document.nonce == *request.nonce);
        rs.push_back(signature_r(document));
    }
    std::sort(rs.begin(), rs.end());
    CHECK(std::adjacent_find(rs.begin(), rs.end()) == rs.end());
    // The pool is empty: the next document is signed the RFC 6979 way.
    must(attest::verify_document(make_document(*backend), verify_options(pki, *clock.now)));
    CHECK(backend->prepared_nonces() == 0);
}
