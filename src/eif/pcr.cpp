#include <qtbox/eif/pcr.hpp>

#include <algorithm>
#include <array>
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

// Two helper threads, one for PCR0, one for PCR2 and the CRC, while the
// caller reads and writes. The caller copies each chunk into a ring of
// RING_SIZE slots that both helpers read; a slot is reused once both are
// past it. So the threads wait for each other only when the ring is full (a
// handshake per chunk would cost a scheduling delay per chunk on a busy
// machine) and at section boundaries. Three threads stall whenever any
// one of them is descheduled and the ring is full, so the ring holds a few
// scheduler time slices of hashing on a busy machine. Memory: at most
// RING_SIZE chunks (the cpio writer's 1 MiB buffers), whatever the image.
struct SectionHasher::Workers {
    static constexpr std::size_t RING_SIZE = 8;

    struct Slot {
        Bytes bytes;
        Route route;
    };

    Workers(crypto::Sha384& pcr0_hasher, crypto::Sha384& pcr2_hasher, std::uint32_t& section_crc)
        : pcr0(pcr0_hasher), pcr2(pcr2_hasher), crc(section_crc)
    {
        threads[0] = std::thread([this] { run(0); });
        threads[1] = std::thread([this] { run(1); });
    }
    ~Workers()
    {
        {
            std::lock_guard lock(mutex);
            stopping = true;
        }
        wake.notify_all();
        for (auto& thread : threads)
            thread.join();
    }

    std::uint64_t slowest() const { return std::min(consumed[0], consumed[1]); }

    void submit(ByteView bytes, Route route)
    {
        std::unique_lock lock(mutex);
        space.wait(lock, [this] { return produced - slowest() < RING_SIZE; });
        // Both helpers are past this slot: only this thread touches it now.
        lock.unlock();
        Slot& slot = ring[produced % RING_SIZE];
        slot.bytes.assign(bytes.begin(), bytes.end());
        slot.route = route;
        lock.lock();
        ++produced;
        lock.unlock();
        wake.notify_all();
    }

    // Returns once every submitted byte is in the CRC and the hashes; until
    // the next submit() the helpers touch neither.
    void drain()
    {
        std::unique_lock lock(mutex);
        space.wait(lock, [this] { return slowest() == produced; });
    }

    void run(int which)
    {
        std::unique_lock lock(mutex);
        for (;;) {
            wake.wait(lock, [&] { return consumed[which] < produced || stopping; });
            if (consumed[which] == produced)
                return;
            // The producer writes this slot only after both helpers passed it.
            Slot const& slot = ring[consumed[which] % RING_SIZE];
            lock.unlock();
            if (which == 0)
                hash_into_pcr0(pcr0, slot.bytes, slot.route);
            else
                crc = hash_into_pcr2(pcr2, crc, slot.bytes, slot.route);
            lock.lock();
            ++consumed[which];
            space.notify_all();
        }
    }

    crypto::Sha384& pcr0;
    crypto::Sha384& pcr2;
    std::uint32_t& crc;
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable space;
    std::array<Slot, RING_SIZE> ring;
    std::uint64_t produced { 0 };
    std::array<std::uint64_t, 2> consumed {};
    bool stopping { false };
    std::array<std::thread, 2> threads;
};

SectionHasher::SectionHasher(bool parallel)
{
    if (parallel)
        m_workers = std::make_unique<Workers>(m_pcr0, m_pcr2, m_crc);
}

SectionHasher::~SectionHasher() = default;

SectionHasher::Route SectionHasher::route() const
{
    switch (m_section) {
    case SectionType::Kernel:
    case SectionType::Cmdline:
        return { true, false };
    case SectionType::Ramdisk:
        return { true, m_ramdisks > 1 };
    default:
        return {};
    }
}

void SectionHasher::hash_into_pcr0(crypto::Sha384& pcr0, ByteView bytes, Route route)
{
    if (route.pcr0)
        pcr0.update(bytes);
}

std::uint32_t SectionHasher::hash_into_pcr2(crypto::Sha384& pcr2, std::uint32_t crc, ByteView bytes, Route route)
{
    if (route.pcr2)
        pcr2.update(bytes);
    return crc32_update(crc, bytes);
}

void SectionHasher::begin_section(SectionType type)
{
    if (m_workers)
        m_workers->drain();
    // The first ramdisk has ended: PCR0's stream so far is PCR1's
    // (docs/FORMATS.md §2).
    if (m_section == SectionType::Ramdisk && m_ramdisks == 1 && !m_pcr1)
        m_pcr1 = measure_digest(m_pcr0.digest_so_far());
    m_crc = 0;
    m_section = type;
    if (type == SectionType::Ramdisk)
        ++m_ramdisks;
}

void SectionHasher::update(ByteView bytes)
{
    Route where = route();
    if (m_workers) {
        m_workers->submit(bytes, where);
        return;
    }
    hash_into_pcr0(m_pcr0, bytes, where);
    m_crc = hash_into_pcr2(m_pcr2, m_crc, bytes, where);
}

std::uint32_t SectionHasher::section_crc()
{
    if (m_workers)
        m_workers->drain();
    return m_crc;
}

Measurements SectionHasher::finish()
{
    if (m_workers)
        m_workers->drain();
    Measurements result;
    // With no second ramdisk, PCR0's whole stream is PCR1's.
    result.pcr1 = m_pcr1 ? *m_pcr1 : measure_digest(m_pcr0.digest_so_far());
    result.pcr0 = measure_digest(m_pcr0.finish());
    result.pcr2 = measure_digest(m_pcr2.finish());
    return result;
}

} // namespace qtbox::eif
