#include <qtbox/eif/pcr.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace qtbox::eif {

Pcr measure_digest(crypto::Sha384Digest const& digest)
{
    crypto::Sha384 extend;
    Pcr zeros {};
    extend.update(zeros);
    extend.update(digest);
    return extend.finish();
}

Pcr measure(ByteView data)
{
    return measure_digest(crypto::sha384(data));
}

// One helper thread that hashes the view it is handed while the caller
// hashes the same view into another register.
struct PcrHasher::Worker {
    explicit Worker(crypto::Sha384& target) : hasher(target), thread([this] { run(); }) { }
    ~Worker()
    {
        {
            std::lock_guard lock(mutex);
            stopping = true;
        }
        wake.notify_all();
        thread.join();
    }

    void start(ByteView bytes)
    {
        {
            std::lock_guard lock(mutex);
            pending = bytes;
            busy = true;
        }
        wake.notify_all();
    }

    void wait()
    {
        std::unique_lock lock(mutex);
        done.wait(lock, [this] { return !busy; });
    }

    void run()
    {
        std::unique_lock lock(mutex);
        for (;;) {
            wake.wait(lock, [this] { return busy || stopping; });
            if (stopping && !busy)
                return;
            auto bytes = pending;
            lock.unlock();
            hasher.update(bytes);
            lock.lock();
            busy = false;
            done.notify_all();
        }
    }

    crypto::Sha384& hasher;
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable done;
    ByteView pending;
    bool busy { false };
    bool stopping { false };
    std::thread thread;
};

PcrHasher::PcrHasher(bool parallel)
{
    if (parallel)
        m_worker = std::make_unique<Worker>(m_pcr2);
}

PcrHasher::~PcrHasher() = default;

void PcrHasher::begin_section(SectionType type)
{
    m_section = type;
    if (type == SectionType::Ramdisk)
        ++m_ramdisks;
}

void PcrHasher::update(ByteView bytes)
{
    switch (m_section) {
    case SectionType::Kernel:
    case SectionType::Cmdline:
        m_pcr0.update(bytes);
        m_pcr1.update(bytes);
        return;
    case SectionType::Ramdisk:
        if (m_ramdisks == 1) {
            m_pcr0.update(bytes);
            m_pcr1.update(bytes);
            return;
        }
        if (m_worker) {
            m_worker->start(bytes);
            m_pcr0.update(bytes);
            m_worker->wait();
            return;
        }
        m_pcr0.update(bytes);
        m_pcr2.update(bytes);
        return;
    default:
        return;
    }
}

Measurements PcrHasher::finish()
{
    Measurements result;
    result.pcr0 = measure_digest(m_pcr0.finish());
    result.pcr1 = measure_digest(m_pcr1.finish());
    result.pcr2 = measure_digest(m_pcr2.finish());
    return result;
}

} // namespace qtbox::eif
