// attest-verify: the relying party's verifier of attestation documents.
// Verifies chain, signature, freshness, nonce and PCRs in docs/FORMATS.md §9's order,
// prints the claims as JSON, and can seal a secret to the key the document
// carries. Made for shell pipelines: the exit status is the verdict.
//
// See: docs/FORMATS.md §4 (document), §9 (this applet), §10 (errors); RFC 9052
// (COSE_Sign1); docs/PLATFORMS.md §N4 (Nitro profile); man attest-verify(1).
#include <qtbox/attest/seal.hpp>
#include <qtbox/attest/verify.hpp>
#include "support/applet.hpp"
#include "support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/hash.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <string>
#include <vector>

using namespace qtbox;

QT_APPLET(attest_verify, "attest-verify", "verify an attestation document, print its claims, seal a secret to it");

namespace {

constexpr int EXIT_IO = 1;
// One document's input: base64 of the largest document plus generous
// whitespace. A larger input is refused unread (exit 10).
constexpr std::size_t MAX_INPUT_SIZE = 256 * 1024;
// --root: a PEM bundle of a few certificates.
constexpr std::size_t MAX_ROOT_FILE_SIZE = 1024 * 1024;

int exit_code(Error const& error)
{
    for (auto failure : { attest::VerifyError::Malformed, attest::VerifyError::Chain, attest::VerifyError::Signature,
             attest::VerifyError::Time, attest::VerifyError::Policy, attest::VerifyError::Nonce }) {
        if (error.is(failure))
            return static_cast<int>(failure);
    }
    return EXIT_IO;
}

// Reads a file named on the command line: exit 1 when it cannot be read.
ErrorOr<Bytes> read_named(std::string const& path, std::size_t limit, std::string_view what)
{
    auto bytes = sys::read_file(path, limit);
    if (bytes.is_error())
        return bytes.release_error().context(what);
    return bytes;
}

struct Options {
    std::string input { "-" };
    std::string root_file;
    std::string root_fingerprint;
    std::string at;
    std::string max_age;
    std::string nonce;
    std::vector<std::string> pcrs;
    std::string policy;
    std::string seal_in;
    std::string seal_out;
    bool batch { false };
    bool quiet { false };
    bool allow_debug { false };
    std::string signature_order;
};

// Turns the command line into VerifyOptions. Errors are usage errors (2),
// except unreadable files (1).
ErrorOr<attest::VerifyOptions> build_options(Options const& options, int& error_exit)
{
    error_exit = EXIT_USAGE;
    attest::VerifyOptions verify;
    if (options.root_file.empty() == options.root_fingerprint.empty())
        return Error::from_string("exactly one of --root and --root-fingerprint is required");
    if (!options.root_file.empty()) {
        error_exit = EXIT_IO;
        Bytes pem = TRY(read_named(options.root_file, MAX_ROOT_FILE_SIZE, "--root " + options.root_file));
        error_exit = EXIT_USAGE;
        auto roots = crypto::Certificate::parse_pem_bundle(as_chars(pem));
        if (roots.is_error())
            return Error::from_string(fmt::format("--root {}: {}", options.root_file, roots.error().message()));
        verify.anchor.roots = roots.release_value();
    } else {
        // openssl x509 -fingerprint prints "AB:CD:...": colons are allowed.
        std::string hex = options.root_fingerprint;
        std::erase(hex, ':');
        auto digest = hex_decode(hex);
        if (digest.is_error() || digest.value().size() != crypto::Sha256Digest {}.size())
            return Error::from_string(
                fmt::format("--root-fingerprint {}: not a SHA-256 (64 hex digits)", options.root_fingerprint));
        crypto::Sha256Digest fingerprint {};
        std::copy(digest.value().begin(), digest.value().end(), fingerprint.begin());
        verify.anchor.fingerprint = fingerprint;
    }
    if (options.at.empty()) {
        verify.at = now_millis();
    } else {
        auto at = parse_rfc3339(options.at);
        if (at.is_error())
            return Error::from_string(fmt::format("--at {}: {}", options.at, at.error().message()));
        verify.at = at.value();
    }
    if (!options.max_age.empty()) {
        auto age = parse_duration_ms(options.max_age);
        if (age.is_error())
            return Error::from_string(fmt::format("--max-age {}: {}", options.max_age, age.error().message()));
        verify.expectations.max_age_ms = age.value();
    }
    if (!options.nonce.empty()) {
        auto nonce = hex_decode(options.nonce);
        if (nonce.is_error())
            return Error::from_string(fmt::format("--nonce {}: not hex", options.nonce));
        verify.expectations.nonces.push_back(nonce.release_value());
    }
    if (options.signature_order == "rfc9052")
        verify.signature_order = cose::SignatureOrder::Rfc9052;
    else if (options.signature_order == "qingtian")
        verify.signature_order = cose::SignatureOrder::QingTian;
    else if (!options.signature_order.empty())
        return Error::from_string(fmt::format("--signature-order {}: not rfc9052 or qingtian", options.signature_order));
    for (auto const& pcr : options.pcrs)
        verify.expectations.pcrs.push_back(TRY(attest::parse_pcr_argument(pcr)));
    if (!options.policy.empty()) {
        error_exit = EXIT_IO;
        Bytes json = TRY(read_named(options.policy, attest::MAX_POLICY_FILE_SIZE, "--policy " + options.policy));
        error_exit = EXIT_USAGE;
        auto added = attest::add_policy_json(as_chars(json), verify.expectations);
        if (added.is_error())
            return Error::from_string(fmt::format("--policy {}: {}", options.policy, added.error().message()));
    }
    return verify;
}

// Input bytes → COSE bytes → verified document.
ErrorOr<attest::VerifiedDocument> verify_input(ByteView input, attest::VerifyOptions const& verify)
{
    auto cose = attest::decode_input(input);
    if (cose.is_error())
        return Error::from_code(attest::VerifyError::Malformed, "malformed document: " + cose.error().message());
    return attest::verify_document(cose.value(), verify);
}

ErrorOr<void> seal_to(attest::VerifiedDocument const& verified, attest::Expectations const& expectations, Options const& options,
    int& error_exit)
{
    error_exit = static_cast<int>(attest::VerifyError::Policy);
    TRY(attest::check_seal_recipient(verified, expectations, options.allow_debug));
    error_exit = static_cast<int>(attest::VerifyError::Malformed);
    ByteView field = verified.document.public_key ? ByteView(*verified.document.public_key) : ByteView();
    auto recipient = TRY(attest::recipient_key(field));
    error_exit = EXIT_IO;
    Bytes plaintext = TRY(read_named(options.seal_in, attest::MAX_SEAL_PLAINTEXT, "--seal " + options.seal_in));
    Bytes envelope = TRY(attest::seal(plaintext, recipient));
    secure_zero(plaintext.data(), plaintext.size());
    auto file = sys::AtomicFile::create(options.seal_out, 0644);
    if (file.is_error())
        return file.release_error().context("--seal-out " + options.seal_out);
    TRY(file.value().write(envelope));
    auto committed = file.value().commit();
    if (committed.is_error())
        return committed.release_error().context("--seal-out " + options.seal_out);
    return {};
}

// --batch: one base64 document per line; one JSON line per document on
// stdout; the exit status is the first failing document's, else 0.
int run_batch(Options const& options, attest::VerifyOptions verify)
{
    // Documents of one fleet share their CA links: each distinct link
    // (exact DER of both certificates) is verified once per run.
    crypto::LinkCache links;
    verify.link_cache = &links;
    UniqueFd owned;
    int fd = 0;
    if (options.input != "-") {
        auto opened = sys::open(options.input, O_RDONLY | O_CLOEXEC);
        if (opened.is_error())
            return report(opened.error(), EXIT_IO);
        owned = opened.release_value();
        fd = owned.get();
    }
    int status = 0;
    std::size_t index = 0;
    std::string line;
    bool oversized = false;
    auto finish_line = [&]() {
        bool blank = std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
        if (blank && !oversized)
            return;
        ErrorOr<attest::VerifiedDocument> result = oversized
            ? ErrorOr<attest::VerifiedDocument>(Error::from_code(attest::VerifyError::Malformed,
                  fmt::format("malformed document: line longer than {} bytes", MAX_INPUT_SIZE)))
            : verify_input(as_bytes(line), verify);
        int code = result.is_error() ? exit_code(result.error()) : 0;
        if (result.is_error())
            log::error("document {}: {}", index, result.error().message());
        if (!options.quiet) {
            std::string json = result.is_error()
                ? fmt::format("{{\"index\":{},\"status\":{},\"error\":{}}}", index, code,
                      nlohmann::json(result.error().message()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                : fmt::format("{{\"index\":{},\"status\":0,\"claims\":{}}}", index, attest::claims_json(result.value(), -1));
            fmt::print("{}\n", json);
        }
        if (status == 0)
            status = code;
        ++index;
    };
    char buffer[64 * 1024];
    for (;;) {
        auto got = sys::read(fd, buffer, sizeof buffer);
        if (got.is_error())
            return report(got.release_error().context(options.input), EXIT_IO);
        std::size_t n = got.value();
        for (std::size_t i = 0; i < n; ++i) {
            if (buffer[i] == '\n') {
                finish_line();
                line.clear();
                oversized = false;
            } else if (line.size() < MAX_INPUT_SIZE) {
                line.push_back(buffer[i]);
            } else {
                oversized = true;
            }
        }
        if (n == 0)
            break;
    }
    finish_line();
    std::fflush(stdout);
    return status;
}

} // namespace

int attest_verify_main(int argc, char** argv)
{
    CLI::App app;
    configure_app(app, "Verify an attestation document (QingTian or Nitro profile): the chain to a pinned root, "
                       "the COSE signature, freshness, nonce and PCRs, in that order (docs/FORMATS.md §9). Prints the claims "
                       "as JSON; the exit status is the verdict.");
    Options options;
    app.add_option("FILE", options.input, "Document, raw COSE or base64 ('-' or absent: standard input)");
    app.add_option("--root", options.root_file, "PEM file of the pinned root certificate(s)")->type_name("PEM");
    app.add_option("--root-fingerprint", options.root_fingerprint, "SHA-256 of the pinned root's DER (hex)")
        ->type_name("SHA256HEX");
    app.add_option("--at", options.at, "Verify at this instant instead of now")->type_name("RFC3339");
    app.add_option("--max-age", options.max_age, "Refuse documents older than this at --at (900, 15m, 1h)")
        ->type_name("DUR");
    app.add_option("--nonce", options.nonce, "The nonce the document must carry")->type_name("HEX");
    app.add_option("--pcr", options.pcrs, "Required PCR value; repeatable")->type_name("N=HEX");
    app.add_option("--policy", options.policy, "JSON policy: {\"pcrs\": {...}, \"max_age_s\": N, \"nonce\": HEX}")
        ->type_name("FILE");
    app.add_option("--seal", options.seal_in, "After verification, seal this file to the document's public_key")
        ->type_name("IN");
    app.add_option("--seal-out", options.seal_out, "Where the sealed envelope goes (with --seal)")->type_name("OUT");
    app.add_flag("--allow-debug", options.allow_debug,
        "With --seal: seal to a debug-mode enclave's document too (PCR0 all zeros; its parent can read its console)");
    app.add_option("--signature-order", options.signature_order,
           "Accept the COSE signature in this byte order only (default: either; the claims say which verified)")
        ->type_name("rfc9052|qingtian");
    app.add_flag("--batch", options.batch, "FILE holds one base64 document per line; print one JSON line each");
    app.add_flag("-q,--quiet", options.quiet, "Print no claims; only the exit status and errors");
    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;

    if (options.seal_in.empty() != options.seal_out.empty())
        return report(Error::from_string("--seal and --seal-out go together"), EXIT_USAGE);
    if (options.batch && !options.seal_in.empty())
        return report(Error::from_string("--seal cannot be used with --batch"), EXIT_USAGE);

    int error_exit = EXIT_USAGE;
    auto verify = build_options(options, error_exit);
    if (verify.is_error())
        return report(verify.error(), error_exit);
    if (!options.seal_in.empty() && verify.value().expectations.pcrs.empty())
        return report(Error::from_string("--seal needs at least one PCR requirement (--pcr N=HEX or a --policy with pcrs): "
                                         "without one, any enclave whose chain verifies, a debug one included, gets the secret"),
            EXIT_USAGE);
    if (options.allow_debug && options.seal_in.empty())
        return report(Error::from_string("--allow-debug goes with --seal"), EXIT_USAGE);

    if (options.batch)
        return run_batch(options, verify.value());

    auto input = sys::read_file(options.input, MAX_INPUT_SIZE);
    if (input.is_error()) {
        if (input.error().is(sys::SysError::TooLarge))
            return report(Error::from_string("malformed document: " + input.error().message()),
                static_cast<int>(attest::VerifyError::Malformed));
        return report(input.error(), EXIT_IO);
    }
    auto verified = verify_input(input.value(), verify.value());
    if (verified.is_error())
        return report(verified.error(), exit_code(verified.error()));

    if (!options.seal_in.empty()) {
        auto sealed = seal_to(verified.value(), verify.value().expectations, options, error_exit);
        if (sealed.is_error())
            return report(sealed.error(), error_exit);
    }
    if (!options.quiet)
        fmt::print("{}\n", attest::claims_json(verified.value()));
    return 0;
}
