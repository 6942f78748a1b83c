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

// One helper thread for the CRC and PCR2 while the caller hashes PCR0 (and
// PCR1). The caller's view is copied into one of a few buffers and queued,
// so the two threads only wait for each other when the queue is full (a
// handshake per chunk would cost a scheduling delay per chunk on a busy
// machine) and at section boundaries. Memory: at most QUEUE_DEPTH chunks.
struct SectionHasher::Worker {
    static constexpr std::size_t QUEUE_DEPTH = 4;

    struct Item {
        Bytes bytes;
        bool into_pcr2 { false };
    };

    Worker(crypto::Sha384& pcr2_hasher, std::uint32_t& section_crc)
        : pcr2(pcr2_hasher), crc(section_crc), thread([this] { run(); }) { }
    ~Worker()
    {
        {
            std::lock_guard lock(mutex);
            stopping = true;
        }
        wake.notify_all();
        thread.join();
    }

    void submit(ByteView bytes, bool into_pcr2)
    {
        std::unique_lock lock(mutex);
        space.wait(lock, [this] { return queue.size() < QUEUE_DEPTH; });
        Item item;
        if (!spare.empty()) {
            item.bytes = std::move(spare.back());
            spare.pop_back();
        }
        item.bytes.assign(bytes.begin(), bytes.end());
        item.into_pcr2 = into_pcr2;
        queue.push_back(std::move(item));
        lock.unlock();
        wake.notify_all();
    }

    // Returns once every submitted byte is in the CRC and the hash; until
    // the next submit() the helper touches neither.
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
            Item item = std::move(queue.front());
            queue.pop_front();
            busy = true;
            lock.unlock();
            crc = crc32_update(crc, item.bytes);
            if (item.into_pcr2)
                pcr2.update(item.bytes);
            lock.lock();
            busy = false;
            spare.push_back(std::move(item.bytes));
            space.notify_all();
        }
    }

    crypto::Sha384& pcr2;
    std::uint32_t& crc;
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable space;
    std::deque<Item> queue;
    std::vector<Bytes> spare;
    bool busy { false };
    bool stopping { false };
    std::thread thread;
};

SectionHasher::SectionHasher(bool parallel)
{
    if (parallel)
        m_worker = std::make_unique<Worker>(m_pcr2, m_crc);
}

SectionHasher::~SectionHasher() = default;

void SectionHasher::begin_section(SectionType type)
{
    if (m_worker)
        m_worker->drain();
    m_crc = 0;
    m_section = type;
    if (type == SectionType::Ramdisk)
        ++m_ramdisks;
}

void SectionHasher::update(ByteView bytes)
{
    bool application = m_section == SectionType::Ramdisk && m_ramdisks > 1;
    if (m_worker)
        m_worker->submit(bytes, application);
    else
        m_crc = crc32_update(m_crc, bytes);
    switch (m_section) {
    case SectionType::Kernel:
    case SectionType::Cmdline:
        m_pcr0.update(bytes);
        m_pcr1.update(bytes);
        return;
    case SectionType::Ramdisk:
        m_pcr0.update(bytes);
        if (!application)
            m_pcr1.update(bytes);
        else if (!m_worker)
            m_pcr2.update(bytes);
        return;
    default:
        return;
    }
}

std::uint32_t SectionHasher::section_crc()
{
    if (m_worker)
        m_worker->drain();
    return m_crc;
}

Measurements SectionHasher::finish()
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
