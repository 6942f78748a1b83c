// qtsm: the enclave's shell client of qtsm-server. Describes, extends and
// locks PCRs, fetches attestation documents and random bytes, makes the key
// pair a relying party seals secrets to, and opens what it sealed.
//
// See: docs/FORMATS.md §5 (protocol), §4 (document), §9 (attest-verify --seal, whose
// envelopes `open` reads); man qtsm(1).
#include <qtbox/attest/seal.hpp>
#include "support/applet.hpp"
#include "support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/pem.hpp>
#include <qtbox/qtsm/client.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <unistd.h>

using namespace qtbox;

QT_APPLET(qtsm, "qtsm", "shell client of the QTSM: PCRs, attestation documents, random bytes, sealed secrets");

namespace {

constexpr int EXIT_FAILURE_RUNTIME = 1;
// A QTSM error answer exits with this plus QingTian's error_code value
// (InvalidIndex 11, ReadOnlyIndex 14, InputTooLarge 17, ...).
constexpr int EXIT_QTSM_ERROR_BASE = 10;
// `random N`: at most this many bytes in one run.
constexpr std::size_t MAX_RANDOM_BYTES = 1024 * 1024;

int fail(Error const& error, std::string_view command)
{
    log::error("{}: {}", command, error.message());
    return EXIT_FAILURE_RUNTIME;
}

// For the result of a QTSM call: its errors carry a qtsm::QtsmError (an
// {"Error": NAME} answer, or InvalidResponse), or an errno for I/O.
int fail_call(Error const& error, std::string_view command)
{
    log::error("{}: {}", command, error.message());
    if (auto code = error.code_as<qtsm::QtsmError>(); code && *code != qtsm::QtsmError::NoError)
        return EXIT_QTSM_ERROR_BASE + static_cast<int>(*code);
    return EXIT_FAILURE_RUNTIME;
}

int usage(std::string_view command, std::string const& message)
{
    log::error("{}: {}", command, message);
    return EXIT_USAGE;
}

// HEX, or @FILE for the file's bytes (at most `limit`; the QTSM judges the
// exact size limits and answers InputTooLarge past them).
ErrorOr<Bytes> data_argument(std::string const& text, std::size_t limit, std::string_view option)
{
    if (text.starts_with("@")) {
        auto bytes = sys::read_file(text.substr(1), limit);
        if (bytes.is_error())
            return bytes.release_error().context(option);
        return bytes;
    }
    auto bytes = hex_decode(text);
    if (bytes.is_error())
        return Error::from_string(fmt::format("{}: expected HEX or @FILE: {}", option, bytes.error().message()));
    return bytes;
}

bool is_hex_text(ByteView bytes)
{
    return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t c) {
        return std::isxdigit(c) || c == '\n' || c == '\r' || c == ' ' || c == '\t';
    });
}

// --public-key: HEX, or @FILE holding DER, PEM ("PUBLIC KEY") or the hex
// line `qtsm keygen` prints. The document carries the DER.
ErrorOr<Bytes> public_key_argument(std::string const& text)
{
    auto bytes = TRY(data_argument(text, crypto::MAX_KEY_INPUT_SIZE, "--public-key"));
    if (!text.starts_with("@"))
        return bytes;
    if (crypto::looks_like_pem(bytes)) {
        auto key = crypto::PublicKey::from_spki_pem(as_chars(bytes));
        if (key.is_error())
            return key.release_error().context("--public-key");
        auto der = key.value().spki_der();
        return Bytes(der.begin(), der.end());
    }
    if (!bytes.empty() && is_hex_text(bytes)) {
        std::string compact;
        for (auto c : bytes) {
            if (std::isxdigit(c))
                compact.push_back(static_cast<char>(c));
        }
        return hex_decode(compact);
    }
    return bytes;
}

void print_json(nlohmann::json const& value) { fmt::print("{}\n", value.dump(2)); }

ErrorOr<void> write_stdout(ByteView bytes)
{
    auto written = sys::write_all(STDOUT_FILENO, bytes);
    if (written.is_error())
        return written.release_error().context("write to standard output");
    return {};
}

// Connects to qtsm-server, runs `work` with the client, and reports a
// failure of either (docs/FORMATS.md §10: one line) with fail_call's exit status.
template<typename Work>
int with_client(std::string const& socket_path, std::string_view command, Work work)
{
    auto client = qtsm::Client::connect(socket_path);
    if (client.is_error())
        return fail(client.error(), command);
    auto result = work(client.value());
    return result.is_error() ? fail_call(result.error(), command) : 0;
}

} // namespace

int qtsm_main(int argc, char** argv)
{
    CLI::App app;
    configure_app(app, "Shell client of qtsm-server: PCRs, attestation documents, random bytes, sealed secrets.");
    app.name("qtsm");
    app.require_subcommand(1);
    std::string socket_path = qtsm::default_socket_path();
    app.add_option("--socket", socket_path, "qtsm-server's socket (default $QTSM_SOCKET or /run/qtsm.sock)");

    std::uint16_t index = 0;
    std::string data;
    std::vector<std::uint16_t> indices;
    std::string nonce, user_data, public_key;
    std::size_t count = 0;
    std::string key_out, key_type = "p384", key_path;
    bool force = false;

    auto* describe = app.add_subcommand("describe", "print the QTSM's description (JSON)");
    auto* describe_pcr = app.add_subcommand("describe-pcr", "print one PCR and its lock (JSON)");
    describe_pcr->add_option("index", index, "PCR index (0-31)")->required();
    auto* extend_pcr = app.add_subcommand("extend-pcr", "extend a user PCR (16-31) and print its new value (JSON)");
    extend_pcr->add_option("index", index, "PCR index (16-31)")->required();
    extend_pcr->add_option("--data", data, "HEX, or @FILE for a file's bytes")->required();
    auto* lock_pcr = app.add_subcommand("lock-pcr", "lock a user PCR until the enclave stops");
    lock_pcr->add_option("index", index, "PCR index (16-31)")->required();
    auto* lock_pcrs = app.add_subcommand("lock-pcrs", "lock several user PCRs at once (all or none)");
    lock_pcrs->add_option("indices", indices, "PCR indices (16-31)")->required();
    auto* attest = app.add_subcommand("attest", "write an attestation document (COSE, binary) to standard output");
    attest->add_option("--nonce", nonce, "nonce, HEX (at most 512 bytes)");
    attest->add_option("--user-data", user_data, "user data, HEX or @FILE (at most 512 bytes)");
    attest->add_option("--public-key", public_key, "public key, HEX or @FILE: DER, PEM or keygen's hex (at most 1024 bytes)");
    auto* random = app.add_subcommand("random", "print N random bytes from the QTSM, in hex");
    random->add_option("count", count, "number of bytes")->required()->check(CLI::Range(std::size_t(1), MAX_RANDOM_BYTES));
    auto* keygen = app.add_subcommand("keygen", "make a key pair: the private key to a file (0600), the public key (DER, hex) to standard output");
    keygen->add_option("--out", key_out, "private key file (PEM)")->required();
    keygen->add_option("--type", key_type, "p384 or rsa2048")->check(CLI::IsMember({ "p384", "rsa2048" }))->capture_default_str();
    keygen->add_flag("--force", force, "replace an existing key file");
    auto* open = app.add_subcommand("open", "decrypt an envelope from attest-verify --seal (standard input) to standard output");
    open->add_option("key", key_path, "private key file from keygen")->required();

    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;
    std::signal(SIGPIPE, SIG_IGN);

    if (describe->parsed()) {
        return with_client(socket_path, "describe", [](qtsm::Client& client) -> ErrorOr<void> {
            auto d = TRY(client.describe());
            print_json({ { "version_major", d.version_major }, { "version_minor", d.version_minor },
                { "version_patch", d.version_patch }, { "module_id", d.module_id }, { "max_pcrs", d.max_pcrs },
                { "locked_pcrs", d.locked_pcrs }, { "digest", d.digest } });
            return {};
        });
    }
    if (describe_pcr->parsed()) {
        return with_client(socket_path, "describe-pcr", [&](qtsm::Client& client) -> ErrorOr<void> {
            auto pcr = TRY(client.describe_pcr(index));
            print_json({ { "index", index }, { "lock", pcr.lock }, { "data", hex_encode(pcr.data) } });
            return {};
        });
    }
    if (extend_pcr->parsed()) {
        auto bytes = data_argument(data, qtsm::MAX_REQUEST_SIZE, "--data");
        if (bytes.is_error())
            return usage("extend-pcr", bytes.error().message());
        return with_client(socket_path, "extend-pcr", [&](qtsm::Client& client) -> ErrorOr<void> {
            auto value = TRY(client.extend_pcr(index, bytes.value()));
            print_json({ { "index", index }, { "data", hex_encode(value) } });
            return {};
        });
    }
    if (lock_pcr->parsed())
        return with_client(socket_path, "lock-pcr", [&](qtsm::Client& client) { return client.lock_pcr(index); });
    if (lock_pcrs->parsed())
        return with_client(socket_path, "lock-pcrs", [&](qtsm::Client& client) { return client.lock_pcrs(indices); });
    if (attest->parsed()) {
        if (::isatty(STDOUT_FILENO))
            return usage("attest", "refusing to write a binary document to a terminal (redirect it: qtsm attest > doc.cose)");
        qtsm::AttestationRequest request;
        if (!nonce.empty()) {
            auto bytes = hex_decode(nonce);
            if (bytes.is_error())
                return usage("attest", fmt::format("--nonce: {}", bytes.error().message()));
            request.nonce = bytes.release_value();
        }
        if (!user_data.empty()) {
            auto bytes = data_argument(user_data, qtsm::MAX_REQUEST_SIZE, "--user-data");
            if (bytes.is_error())
                return usage("attest", bytes.error().message());
            request.user_data = bytes.release_value();
        }
        if (!public_key.empty()) {
            auto bytes = public_key_argument(public_key);
            if (bytes.is_error())
                return usage("attest", bytes.error().message());
            request.public_key = bytes.release_value();
        }
        return with_client(socket_path, "attest", [&](qtsm::Client& client) -> ErrorOr<void> {
            return write_stdout(TRY(client.attestation(request)));
        });
    }
    if (random->parsed()) {
        return with_client(socket_path, "random", [&](qtsm::Client& client) -> ErrorOr<void> {
            return write_stdout(as_bytes(hex_encode(TRY(client.random(count))) + "\n"));
        });
    }
    if (keygen->parsed()) {
        if (!force && !sys::lstat(key_out).is_error())
            return usage("keygen", fmt::format("{} already exists (use --force to replace it)", key_out));
        auto key = key_type == "rsa2048" ? crypto::PrivateKey::generate_rsa(2048)
                                         : crypto::PrivateKey::generate(crypto::KeyType::EcP384);
        if (key.is_error())
            return fail(key.error(), "keygen");
        auto pem = key.value().to_pem();
        if (pem.is_error())
            return fail(pem.error(), "keygen");
        auto file = sys::AtomicFile::create(key_out, 0600);
        if (file.is_error())
            return fail(file.error(), "keygen");
        auto written = file.value().write(pem.value().view());
        if (!written.is_error())
            written = file.value().commit();
        if (written.is_error())
            return fail(written.error(), "keygen");
        auto printed = write_stdout(as_bytes(hex_encode(key.value().public_key().spki_der()) + "\n"));
        return printed.is_error() ? fail(printed.error(), "keygen") : 0;
    }
    // open
    auto key_bytes = sys::read_file(key_path, crypto::MAX_KEY_INPUT_SIZE);
    if (key_bytes.is_error())
        return fail(key_bytes.error(), "open");
    auto key = crypto::PrivateKey::parse(key_bytes.value());
    secure_zero(key_bytes.value().data(), key_bytes.value().size());
    if (key.is_error())
        return fail(Error::from_string(fmt::format("{}: {}", key_path, key.error().message())), "open");
    auto envelope = sys::read_fd(STDIN_FILENO, attest::MAX_ENVELOPE_SIZE);
    if (envelope.is_error())
        return fail(envelope.release_error().context("read the envelope from standard input"), "open");
    auto plaintext = attest::open(envelope.value(), key.value());
    if (plaintext.is_error())
        return fail(plaintext.error(), "open");
    auto written = write_stdout(plaintext.value().view());
    return written.is_error() ? fail(written.error(), "open") : 0;
}
