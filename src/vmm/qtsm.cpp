#include <qtbox/vmm/qtsm.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/random.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <future>
#include <optional>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <system_error>
#include <thread>

namespace qtbox::vmm {

namespace {

// /etc/machine-id is 33 bytes; anything much larger is not one.
constexpr std::size_t MAX_MACHINE_ID_FILE = 256;

bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// A version 4 UUID (RFC 9562 §5.4), for a debug enclave on a host
// without a machine id.
ErrorOr<std::string> random_uuid()
{
    auto bytes = TRY(crypto::random_bytes(16));
    bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40);
    bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80);
    return instance_id_from_machine_id(hex_encode(bytes));
}

ErrorOr<std::string> resolve_instance_id(QtsmOptions const& options, std::vector<std::string>& notes)
{
    if (!options.instance_id.empty())
        return options.instance_id;
    auto contents = sys::read_file(options.machine_id_path, MAX_MACHINE_ID_FILE);
    auto id = contents.is_error() ? ErrorOr<std::string>(contents.release_error())
                                  : instance_id_from_machine_id(as_chars(contents.value()));
    if (!id.is_error())
        return id.release_value();
    if (options.production)
        return Error::from_code(QtsmSetupError::InstanceId,
            fmt::format("no instance id: {}: {} (hint: pass --instance-id UUID)", options.machine_id_path,
                id.error().message()));
    auto random = TRY(random_uuid());
    notes.push_back(fmt::format("instance id {} made up ({}: {})", random, options.machine_id_path,
        id.error().message()));
    return random;
}

// The local PKI; in debug and raw mode a throwaway one when there is none.
ErrorOr<pki::Authority> authority_for(QtsmOptions const& options, std::vector<std::string>& notes)
{
    auto loaded = options.preloaded_pki ? std::move(*options.preloaded_pki) : pki::load(options.pki_directory);
    if (!loaded.is_error()) {
        notes.push_back(fmt::format("leaves issued by {} ({})", loaded.value().parent.subject(), options.pki_directory));
        return loaded.release_value();
    }
    if (!loaded.error().is(pki::PkiError::Missing))
        return loaded.release_error().context(fmt::format("the local PKI in {}", options.pki_directory));
    if (options.production)
        return Error::from_code(QtsmSetupError::NoPki,
            fmt::format("a production enclave needs the local attestation PKI: {} (hint: run `qt pki init`, "
                        "or set QTBOX_PKI_DIR)",
                loaded.error().message()));
    pki::InitOptions throwaway;
    throwaway.parent_name = "throwaway-debug";
    auto generated = TRY(pki::generate(throwaway));
    notes.push_back(fmt::format("documents chain to a throwaway root made for this run (no local PKI in {})",
        options.pki_directory));
    return std::move(generated.authority);
}

} // namespace

ErrorOr<std::string> instance_id_from_machine_id(std::string_view contents)
{
    if (contents.ends_with('\n'))
        contents.remove_suffix(1);
    constexpr std::size_t DIGITS = 32;
    if (contents.size() != DIGITS || !std::all_of(contents.begin(), contents.end(), is_lower_hex))
        return Error::from_code(QtsmSetupError::InstanceId, "expected 32 lowercase hex digits");
    return fmt::format("{}-{}-{}-{}-{}", contents.substr(0, 8), contents.substr(8, 4), contents.substr(12, 4),
        contents.substr(16, 4), contents.substr(20));
}

qtsm::SystemPcrs platform_pcrs(QtsmOptions const& options, std::string const& instance_id)
{
    qtsm::SystemPcrs pcrs {};
    // docs/FORMATS.md §2: a debug enclave's registers 0-15 are all zeros;
    // so are a raw-mode guest's, which has no measured image.
    if (!options.production || !options.measurements)
        return pcrs;
    auto const& measured = *options.measurements;
    pcrs[0] = measured.pcr0;
    pcrs[1] = measured.pcr1;
    pcrs[2] = measured.pcr2;
    if (options.agency)
        pcrs[3] = qtsm::measure(as_bytes(*options.agency));
    pcrs[4] = qtsm::measure(as_bytes(instance_id));
    if (measured.pcr8)
        pcrs[8] = *measured.pcr8;
    return pcrs;
}

// The QTSM's thread: reads a request frame from its end of the socketpair,
// answers it, and goes on until the channel ends or breaks.
struct QtsmService::Thread {
    UniqueFd channel; // the thread's end, blocking
    std::thread thread;
    std::thread nonces; // prepare_nonces, below
};

namespace {

void answer_requests(qtsm::Backend& backend, int channel)
{
    for (;;) {
        // A zero or over-long length prefix is an error here: qtsm-server
        // never sends one, so the channel closes.
        auto frame = qtsm::read_frame(channel, qtsm::MAX_REQUEST_SIZE);
        if (frame.is_error() || !frame.value())
            break;
        if (qtsm::write_frame(channel, backend.handle(*frame.value())).is_error())
            break;
    }
    // The device sees the end of the stream (and the guest a SHUTDOWN).
    ::shutdown(channel, SHUT_RDWR);
}

// The nonce thread: fills the backend's pool of prepared ECDSA nonces
// (qtsm/backend.hpp) while the pool has room. SCHED_IDLE: it runs only on
// a CPU that nothing else wants, so it never takes time from the guest's
// vCPUs or from a signature being made.
void prepare_nonces(qtsm::Backend& backend)
{
    while (backend.wait_for_nonce_room()) {
        if (backend.prepare_nonce().is_error())
            break; // the QTSM then signs the RFC 6979 way
    }
}

// Every signal but those a fault raises in the thread itself: the
// process's signals (SIGTERM and the like, the vCPU kick) belong to the
// event loop and the vCPU threads, and a SIGPIPE from a closed channel
// becomes EPIPE.
sigset_t asynchronous_signals()
{
    sigset_t set;
    sigfillset(&set);
    for (int fault : { SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP })
        sigdelset(&set, fault);
    return set;
}

} // namespace

QtsmService::QtsmService(std::shared_ptr<qtsm::Backend> backend, NoticeSink notice, std::string first_connection_note)
    : m_backend(std::move(backend))
    , m_notice(std::move(notice))
    , m_first_connection_note(std::move(first_connection_note))
{
}

namespace {

// Starts a thread named `name` that runs `setup` (when given: its seccomp
// filter and the like) and then `body`; returns once setup is done, or
// with the error that setup returned (the thread has then ended). The
// thread starts with the asynchronous signals blocked.
ErrorOr<std::thread> start_thread(char const* name, std::function<ErrorOr<void>()> setup, std::function<void()> body)
{
    std::promise<std::optional<Error>> started;
    auto entered = started.get_future();
    sigset_t blocked = asynchronous_signals(), previous;
    ::pthread_sigmask(SIG_BLOCK, &blocked, &previous);
    std::thread thread;
    try {
        thread = std::thread([name, setup = std::move(setup), body = std::move(body),
                                 started = std::move(started)]() mutable {
            ::pthread_setname_np(::pthread_self(), name);
            if (setup) {
                if (auto installed = setup(); installed.is_error()) {
                    started.set_value(installed.release_error());
                    return;
                }
            }
            started.set_value(std::nullopt);
            body();
        });
    } catch (std::system_error const& error) {
        ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        return Error::from_errno(fmt::format("{} thread", name), error.code().value());
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (auto failed = entered.get()) {
        thread.join();
        return std::move(*failed).context(fmt::format("{} thread", name));
    }
    return thread;
}

} // namespace

ErrorOr<std::shared_ptr<QtsmService>> QtsmService::create(
    std::shared_ptr<qtsm::Backend> backend, NoticeSink notice, std::string first_connection_note, bool sandbox)
{
    std::shared_ptr<QtsmService> service(
        new QtsmService(std::move(backend), std::move(notice), std::move(first_connection_note)));
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0)
        return Error::from_errno("QTSM channel: socketpair");
    service->m_device_end = UniqueFd(ends[0]);
    auto thread = std::make_unique<Thread>();
    thread->channel = UniqueFd(ends[1]);
    TRY(sys::set_nonblocking(service->m_device_end.get()));

    int channel = thread->channel.get();
    auto const& shared_backend = service->m_backend; // each thread holds a reference of its own
    std::function<ErrorOr<void>()> qtsm_filter;
    if (sandbox)
        qtsm_filter = [channel] { return install_qtsm_filter(channel); };
    auto nonce_setup = [sandbox]() -> ErrorOr<void> {
        // Lowering its own policy needs no privilege; the filter then
        // forbids raising it again.
        sched_param param {};
        if (::sched_setscheduler(0, SCHED_IDLE, &param) < 0)
            return Error::from_errno("SCHED_IDLE");
        if (sandbox)
            return install_nonce_filter();
        return {};
    };
    // The QTSM thread is the one that matters; without the nonce thread it
    // signs the RFC 6979 way, so that one failing to start is only a notice.
    thread->thread = TRY(start_thread("qtsm", std::move(qtsm_filter), [backend = shared_backend, channel] {
        answer_requests(*backend, channel);
    }));
    service->m_thread = std::move(thread);
    auto nonces = start_thread("qtsm-nonces", nonce_setup, [backend = shared_backend] { prepare_nonces(*backend); });
    if (nonces.is_error()) {
        if (service->m_notice)
            service->m_notice({ Severity::Warning, fmt::format("QTSM: no prepared nonces: {}", nonces.error().message()) });
    } else {
        service->m_thread->nonces = nonces.release_value();
    }
    return service;
}

QtsmService::~QtsmService()
{
    if (!m_thread)
        return;
    m_backend->stop_preparing();
    if (m_thread->nonces.joinable())
        m_thread->nonces.join();
    // Wakes the thread in its read (or write): it ends the channel.
    ::shutdown(m_thread->channel.get(), SHUT_RDWR);
    if (m_thread->thread.joinable())
        m_thread->thread.join();
}

UniqueFd QtsmService::open_socket()
{
    // docs/FORMATS.md §5: one channel per boot, the first.
    if (m_opened) {
        if (m_notice)
            m_notice({ Severity::Warning, "QTSM: a second connection to port 9001 was refused (one per boot)" });
        return {};
    }
    m_opened = true;
    if (m_notice && !m_first_connection_note.empty())
        m_notice({ Severity::Info, m_first_connection_note });
    return std::move(m_device_end);
}

ErrorOr<QtsmSetup> create_qtsm(QtsmOptions const& options)
{
    if (options.agency && (options.agency->empty() || options.agency->size() > MAX_AGENCY_SIZE))
        return Error::from_code(QtsmSetupError::Agency,
            fmt::format("--agency: 1 to {} bytes", MAX_AGENCY_SIZE));
    std::vector<std::string> notes;
    auto instance_id = TRY(resolve_instance_id(options, notes));
    qtsm::BackendConfig config;
    auto module_id = qtsm::make_module_id(instance_id);
    if (module_id.is_error())
        return Error::from_code(QtsmSetupError::InstanceId, module_id.error().message());
    config.module_id = module_id.release_value();
    config.system_pcrs = platform_pcrs(options, instance_id);
    config.signature_order = options.signature_order;
    auto authority = TRY(authority_for(options, notes));
    auto backend = TRY(qtsm::Backend::create(config, std::move(authority)));
    notes.push_back(fmt::format("module id {}", backend->module_id()));

    // A production enclave's registers and key are said at start, like its
    // PCR0-2; a debug or raw-mode guest's when it first uses the QTSM (a
    // guest without vsock never does).
    QtsmSetup setup;
    std::string first_connection_note;
    if (options.production) {
        if (options.agency)
            setup.notes.push_back(fmt::format("PCR3 {}", hex_encode(config.system_pcrs[3])));
        setup.notes.push_back(fmt::format("PCR4 {}", hex_encode(config.system_pcrs[4])));
        for (auto const& note : notes)
            setup.notes.push_back("QTSM: " + note);
    } else {
        first_connection_note = "QTSM: the enclave connected; debug mode: PCR0-15 are zeros";
        for (auto const& note : notes)
            first_connection_note += "; " + note;
    }
    setup.service = TRY(QtsmService::create(std::shared_ptr<qtsm::Backend>(std::move(backend)), options.notice,
        std::move(first_connection_note), options.sandbox));
    return setup;
}

} // namespace qtbox::vmm
