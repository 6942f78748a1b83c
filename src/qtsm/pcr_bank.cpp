#include <qtbox/qtsm/pcr_bank.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace qtbox::qtsm {

PcrValue extend(PcrValue const& current, ByteView data)
{
    crypto::Sha384 hasher;
    hasher.update(current);
    hasher.update(data);
    return hasher.finish();
}

PcrValue measure(ByteView data)
{
    auto digest = crypto::sha384(data);
    return extend(PcrValue {}, digest);
}

PcrBank::PcrBank(SystemPcrs const& system)
{
    for (std::size_t i = 0; i < SYSTEM_PCR_COUNT; ++i)
        m_registers[i] = { system[i], true };
}

ErrorOr<void> PcrBank::check_user_index(std::size_t index) const
{
    if (index >= PCR_COUNT)
        return Error::from_code(PcrError::InvalidIndex,
            fmt::format("PCR {} does not exist (the bank has {})", index, PCR_COUNT));
    if (index < SYSTEM_PCR_COUNT)
        return Error::from_code(PcrError::ReadOnlyIndex,
            fmt::format("PCR {} is a platform register (0-{} are set by the VMM and locked)", index,
                SYSTEM_PCR_COUNT - 1));
    return {};
}

ErrorOr<PcrState> PcrBank::describe(std::size_t index) const
{
    if (index >= PCR_COUNT)
        return Error::from_code(PcrError::InvalidIndex,
            fmt::format("PCR {} does not exist (the bank has {})", index, PCR_COUNT));
    std::lock_guard guard(m_mutex);
    return m_registers[index];
}

ErrorOr<PcrValue> PcrBank::extend(std::size_t index, ByteView data)
{
    std::lock_guard guard(m_mutex);
    TRY(check_user_index(index));
    if (data.empty())
        return Error::from_code(PcrError::InvalidArgument, "extending a PCR needs at least one byte of data");
    auto& reg = m_registers[index];
    if (reg.locked)
        return Error::from_code(PcrError::ReadOnlyIndex, fmt::format("PCR {} is locked", index));
    reg.value = qtsm::extend(reg.value, data);
    return reg.value;
}

ErrorOr<void> PcrBank::lock(std::size_t index)
{
    std::lock_guard guard(m_mutex);
    TRY(check_user_index(index));
    m_registers[index].locked = true;
    return {};
}

ErrorOr<void> PcrBank::lock(std::span<std::uint16_t const> indices)
{
    if (indices.empty())
        return Error::from_code(PcrError::InvalidArgument, "the list of PCRs to lock is empty");
    std::lock_guard guard(m_mutex);
    for (auto index : indices)
        TRY(check_user_index(index));
    for (auto index : indices)
        m_registers[index].locked = true;
    return {};
}

std::vector<std::uint16_t> PcrBank::locked_indices() const
{
    std::lock_guard guard(m_mutex);
    std::vector<std::uint16_t> locked;
    for (std::size_t i = 0; i < PCR_COUNT; ++i) {
        if (m_registers[i].locked)
            locked.push_back(static_cast<std::uint16_t>(i));
    }
    return locked;
}

std::array<PcrState, PCR_COUNT> PcrBank::snapshot() const
{
    std::lock_guard guard(m_mutex);
    return m_registers;
}

std::vector<PcrEntry> PcrBank::document_pcrs(std::array<PcrState, PCR_COUNT> const& snapshot)
{
    std::vector<PcrEntry> entries;
    for (std::size_t i = 0; i < PCR_COUNT; ++i) {
        auto const& reg = snapshot[i];
        bool zero = std::all_of(reg.value.begin(), reg.value.end(), [](std::uint8_t b) { return b == 0; });
        if (i < SYSTEM_PCR_COUNT || reg.locked || !zero)
            entries.push_back({ static_cast<unsigned>(i), reg.value, reg.locked });
    }
    return entries;
}

} // namespace qtbox::qtsm
