// QTSM framing (docs/FORMATS.md §5): every message, in both directions and on every hop
// (app ⇄ qtsm-server ⇄ VMM), is a u32 big-endian length followed by exactly
// that many bytes holding one CBOR item.
//
// Two readers: read_frame() for blocking sockets (clients, the backend's
// per-connection loop), and FrameReader for event loops, which reads no byte
// beyond the current frame, so that a peer sending ahead is held back by its
// own socket buffer instead of by our memory.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace qtbox::qtsm {

constexpr std::size_t FRAME_HEADER_SIZE = 4;

// Error::code() of framing failures (I/O errors keep their errno).
enum class FrameError {
    TooLarge = 1, // the length prefix announces more than the limit
    Truncated,    // the peer closed the stream inside a frame
    Empty,        // a zero length: no CBOR item is empty
};

// The 4-byte length prefix followed by `item`.
Bytes make_frame(ByteView item);
// Writes one frame (one write_all of prefix and item together, so that
// concurrent writers on a blocking socket never interleave halves).
ErrorOr<void> write_frame(int fd, ByteView item);
// Reads one frame from a blocking descriptor. nullopt when the stream ended
// cleanly before a frame started. FrameError::TooLarge is reported after
// reading only the prefix: the stream is then out of step and the caller
// should answer once and close it.
ErrorOr<std::optional<Bytes>> read_frame(int fd, std::size_t max_size);

// SO_RCVTIMEO and SO_SNDTIMEO: a blocking read or write that waits longer
// fails with EAGAIN instead of hanging on a peer that stopped talking.
ErrorOr<void> set_socket_timeouts(int fd, int milliseconds);

class FrameReader {
public:
    explicit FrameReader(std::size_t max_size) : m_max_size(max_size) { }

    // Where the next bytes of the current frame go: the rest of the prefix,
    // then the rest of the body. Never empty before a frame is complete.
    std::span<std::uint8_t> space();
    // Records `count` bytes written into space(). Returns true when a whole
    // frame is ready for take(); FrameError::TooLarge / Empty as soon as the
    // prefix says so.
    ErrorOr<bool> commit(std::size_t count);
    // The finished frame's item; the reader starts over.
    Bytes take();
    // Some bytes of a frame have arrived but not all.
    bool in_progress() const { return m_filled > 0 || m_have_header; }

private:
    std::size_t m_max_size;
    std::array<std::uint8_t, FRAME_HEADER_SIZE> m_header {};
    bool m_have_header { false };
    std::size_t m_filled { 0 }; // bytes of the header, then of the body
    Bytes m_body;
};

} // namespace qtbox::qtsm
