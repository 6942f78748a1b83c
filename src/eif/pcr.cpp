#include <qtbox/eif/pcr.hpp>

#include <condition_variable>
#include <deque>
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

// One helper thread that hashes PCR2's bytes while the caller hashes the
// same bytes into PCR0. The caller's view is copied into one of a few
// buffers and queued, so the two threads only wait for each other when the
// queue is full (a handshake per chunk would cost a scheduling delay per
// chunk on a busy machine). Memory: at most QUEUE_DEPTH chunks.
struct PcrHasher::Worker {
    static constexpr std::size_t QUEUE_DEPTH = 4;

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

    void submit(ByteView bytes)
    {
        std::unique_lock lock(mutex);
        space.wait(lock, [this] { return queue.size() < QUEUE_DEPTH; });
        Bytes buffer;
        if (!spare.empty()) {
            buffer = std::move(spare.back());
            spare.pop_back();
        }
        buffer.assign(bytes.begin(), bytes.end());
        queue.push_back(std::move(buffer));
        lock.unlock();
        wake.notify_all();
    }

    // Returns once every submitted byte is in the hash.
    void drain()
    {
        std::unique_lock lock(mutex);
        space.wait(lock, [this] { return queue.empty() && !busy; });
    }

    void run()
    {
        std::unique_lock lock(mutex);
        for (;;) {
            wake.wait(lock, [this] { return !queue.empty() || stopping; });
            if (queue.empty())
                return;
            Bytes buffer = std::move(queue.front());
            queue.pop_front();
            busy = true;
            lock.unlock();
            hasher.update(buffer);
            lock.lock();
            busy = false;
            spare.push_back(std::move(buffer));
            space.notify_all();
        }
    }

    crypto::Sha384& hasher;
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable space;
    std::deque<Bytes> queue;
    std::vector<Bytes> spare;
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
            m_worker->submit(bytes);
            m_pcr0.update(bytes);
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
    if (m_worker)
        m_worker->drain();
    Measurements result;
    result.pcr0 = measure_digest(m_pcr0.finish());
    result.pcr1 = measure_digest(m_pcr1.finish());
    result.pcr2 = measure_digest(m_pcr2.finish());
    return result;
}

} // namespace qtbox::eif
