#include <qtbox/qtsm/framing.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <sys/socket.h>
#include <sys/time.h>

namespace qtbox::qtsm {

namespace {

std::uint32_t parse_length(std::array<std::uint8_t, FRAME_HEADER_SIZE> const& header)
{
    return (std::uint32_t(header[0]) << 24) | (std::uint32_t(header[1]) << 16) | (std::uint32_t(header[2]) << 8)
        | std::uint32_t(header[3]);
}

ErrorOr<void> check_length(std::uint32_t length, std::size_t max_size)
{
    if (length == 0)
        return Error::from_code(FrameError::Empty, "frame: zero length (no CBOR item is empty)");
    if (length > max_size)
        return Error::from_code(FrameError::TooLarge,
            fmt::format("frame: {} bytes announced (at most {})", length, max_size));
    return {};
}

} // namespace

Bytes make_frame(ByteView item)
{
    Bytes frame;
    frame.reserve(FRAME_HEADER_SIZE + item.size());
    auto length = static_cast<std::uint32_t>(item.size());
    frame.push_back(static_cast<std::uint8_t>(length >> 24));
    frame.push_back(static_cast<std::uint8_t>(length >> 16));
    frame.push_back(static_cast<std::uint8_t>(length >> 8));
    frame.push_back(static_cast<std::uint8_t>(length));
    frame.insert(frame.end(), item.begin(), item.end());
    return frame;
}

ErrorOr<void> write_frame(int fd, ByteView item)
{
    if (item.size() > 0xFFFFFFFFu)
        return Error::from_code(FrameError::TooLarge, "frame: item larger than 4 GiB");
    return sys::write_all(fd, make_frame(item));
}

ErrorOr<std::optional<Bytes>> read_frame(int fd, std::size_t max_size)
{
    std::array<std::uint8_t, FRAME_HEADER_SIZE> header {};
    std::size_t filled = 0;
    while (filled < header.size()) {
        auto n = TRY(sys::read(fd, header.data() + filled, header.size() - filled));
        if (n == 0) {
            if (filled == 0)
                return std::optional<Bytes> {};
            return Error::from_code(FrameError::Truncated, "frame: the stream ended inside a length prefix");
        }
        filled += n;
    }
    auto length = parse_length(header);
    TRY(check_length(length, max_size));
    Bytes body(length);
    std::size_t received = 0;
    while (received < length) {
        auto n = TRY(sys::read(fd, body.data() + received, length - received));
        if (n == 0)
            return Error::from_code(FrameError::Truncated,
                fmt::format("frame: the stream ended after {} of {} bytes", received, length));
        received += n;
    }
    return std::optional<Bytes>(std::move(body));
}

ErrorOr<void> set_socket_timeouts(int fd, int milliseconds)
{
    timeval timeout {};
    timeout.tv_sec = milliseconds / 1000;
    timeout.tv_usec = (milliseconds % 1000) * 1000;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0)
        return Error::from_errno("setsockopt SO_RCVTIMEO");
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0)
        return Error::from_errno("setsockopt SO_SNDTIMEO");
    return {};
}

std::span<std::uint8_t> FrameReader::space()
{
    if (!m_have_header)
        return { m_header.data() + m_filled, m_header.size() - m_filled };
    return { m_body.data() + m_filled, m_body.size() - m_filled };
}

ErrorOr<bool> FrameReader::commit(std::size_t count)
{
    m_filled += count;
    if (!m_have_header) {
        if (m_filled < m_header.size())
            return false;
        auto length = parse_length(m_header);
        TRY(check_length(length, m_max_size));
        m_have_header = true;
        m_filled = 0;
        m_body.assign(length, 0);
        return false;
    }
    return m_filled == m_body.size();
}

Bytes FrameReader::take()
{
    Bytes body = std::move(m_body);
    m_body = {};
    m_have_header = false;
    m_filled = 0;
    return body;
}

} // namespace qtbox::qtsm
