#include <qtbox/devices/serial_8250.hpp>

#include <algorithm>
#include <optional>

namespace qtbox::devices {

void Serial8250::read(std::uint64_t offset, std::span<std::uint8_t> data)
{
    // Wider accesses read the first register and zeros after it, as an
    // 8-bit device on a wider bus would.
    std::fill(data.begin(), data.end(), 0);
    if (data.empty() || offset >= PORT_COUNT)
        return;
    std::lock_guard lock(m_mutex);
    data[0] = read_register(offset);
    update_interrupt();
}

void Serial8250::write(std::uint64_t offset, ByteView data)
{
    if (data.empty() || offset >= PORT_COUNT)
        return;
    std::optional<std::uint8_t> transmitted;
    {
        std::lock_guard lock(m_mutex);
        transmitted = write_register(offset, data[0]);
        update_interrupt();
    }
    // Outside the lock: the output may block on a stalled console reader,
    // and nothing else (the event loop's input_space and enqueue_input, the
    // other vCPUs' register accesses) may wait for that.
    if (transmitted)
        m_output(*transmitted);
}

std::size_t Serial8250::enqueue_input(ByteView bytes)
{
    std::lock_guard lock(m_mutex);
    std::size_t accepted = std::min(bytes.size(), FIFO_SIZE - m_receive.size());
    m_receive.insert(m_receive.end(), bytes.begin(), bytes.begin() + static_cast<long>(accepted));
    m_receive_count.store(m_receive.size(), std::memory_order_relaxed);
    update_interrupt();
    return accepted;
}

std::size_t Serial8250::input_space() const
{
    // Lock-free: the event loop asks before every wait.
    return FIFO_SIZE - m_receive_count.load(std::memory_order_relaxed);
}

std::uint8_t Serial8250::read_register(std::uint64_t offset)
{
    bool dlab = m_lcr & LCR_DLAB;
    switch (offset) {
    case DATA: {
        if (dlab)
            return m_dll;
        if (m_receive.empty())
            return 0;
        std::uint8_t byte = m_receive.front();
        m_receive.pop_front();
        m_receive_count.store(m_receive.size(), std::memory_order_relaxed);
        return byte;
    }
    case IER:
        return dlab ? m_dlm : m_ier;
    case IIR: {
        std::uint8_t pending = pending_interrupt();
        // Reading IIR while it reports THRE clears that cause (PC16550D
        // table "Interrupt Control Functions").
        if (pending == IIR_THRE)
            m_thre_pending = false;
        return pending | IIR_FIFO_ENABLED;
    }
    case LCR:
        return m_lcr;
    case MCR:
        return m_mcr;
    case LSR:
        return LSR_THR_EMPTY | LSR_IDLE | (m_receive.empty() ? 0 : LSR_DATA_READY);
    case MSR:
        if (m_mcr & MCR_LOOP) {
            // Loopback wires DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD; Linux's
            // probe checks exactly this.
            return static_cast<std::uint8_t>(((m_mcr & 0x01) << 5) | ((m_mcr & 0x02) << 3) | ((m_mcr & 0x04) << 4)
                | ((m_mcr & 0x08) << 4));
        }
        return MSR_DEFAULT;
    case SCR:
        return m_scr;
    default:
        return 0;
    }
}

std::optional<std::uint8_t> Serial8250::write_register(std::uint64_t offset, std::uint8_t value)
{
    bool dlab = m_lcr & LCR_DLAB;
    switch (offset) {
    case DATA: {
        if (dlab) {
            m_dll = value;
            return std::nullopt;
        }
        std::optional<std::uint8_t> transmitted;
        if (m_mcr & MCR_LOOP) {
            if (m_receive.size() < FIFO_SIZE)
                m_receive.push_back(value);
            m_receive_count.store(m_receive.size(), std::memory_order_relaxed);
        } else {
            transmitted = value;
        }
        // The byte is gone at once: the holding register is empty again.
        m_thre_pending = true;
        return transmitted;
    }
    case IER:
        if (dlab) {
            m_dlm = value;
            return std::nullopt;
        }
        // Enabling the THRE interrupt while the holding register is empty
        // raises it at once, as on the real chip.
        if (!(m_ier & IER_THRE) && (value & IER_THRE))
            m_thre_pending = true;
        m_ier = value & 0x0F;
        return std::nullopt;
    case IIR:
        return std::nullopt; // FCR: the FIFOs are always on and always drained
    case LCR:
        m_lcr = value;
        return std::nullopt;
    case MCR:
        m_mcr = value & 0x1F;
        return std::nullopt;
    case SCR:
        m_scr = value;
        return std::nullopt;
    default:
        return std::nullopt; // LSR and MSR are read-only
    }
}

std::uint8_t Serial8250::pending_interrupt() const
{
    if ((m_ier & IER_RDA) && !m_receive.empty())
        return IIR_RDA;
    if ((m_ier & IER_THRE) && m_thre_pending)
        return IIR_THRE;
    return IIR_NONE;
}

void Serial8250::update_interrupt()
{
    bool raised = pending_interrupt() != IIR_NONE;
    if (raised && !m_interrupt_raised)
        m_interrupt();
    m_interrupt_raised = raised;
}

} // namespace qtbox::devices
