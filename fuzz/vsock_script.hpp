// The input language of the vsock_packets target (vsock_packets.cpp): a
// guest (and a few parent programs) scripted as a list of commands, and a
// builder that writes scripts, for the seeds (make_seeds.cpp).
//
// Each command is one byte (taken modulo COMMAND_COUNT) and its operands;
// an input that ends early reads as zeros. Multi-byte operands are
// little-endian.
//
//   TRANSMIT     shape:u8 op:u8 guest_port:u8 parent_port:u8 flags:u8
//                buf_alloc:u32 fwd_cnt:u32 payload_size:u16 fill:u8
//                cut_count:u8 cut:u16 × (cut_count % 4)
//                [src_cid:u64 if shape & 3 == 3] [dst_cid:u64 if shape & 4]
//                [type:u16 if shape & 8] [len:u32 if shape & 16]
//       one TX chain: a header (src_cid the guest's unless shape says
//       otherwise, dst_cid 3, type STREAM, len = payload_size) and
//       payload_size bytes of `fill`, cut into descriptors at the cuts
//   OFFER_RX     count:u8, then per buffer: pieces:u8, length:u16 × (pieces % 3 + 1)
//       count % 4 + 1 RX chains of device-writable buffers
//   RAW_DESCRIPTOR queue:u8 index:u8 address:u32 length:u32 flags:u8 next:u8 publish:u8
//       writes any descriptor; publish & 1 makes index available and notifies
//   NOTIFY       queue:u8   (queue % 4: 3 is no queue)
//   REINITIALIZE event_index:u8   the driver resets the device and sets it up again
//   PARENT_CONNECT parent_port:u8   a parent program connects and sends CONNECT
//   PARENT_WRITE client:u8 size:u16 fill:u8   (size 0: the client closes)
//   RAW_INDEX    queue:u8 index:u16   stores any available index
//
// A parent_port byte picks from PARENT_PORTS, or, for values past it, the
// local port of the newest parent connection's REQUEST. A guest_port byte
// picks from GUEST_PORTS (modulo its size): four ephemeral ports, then the
// ports a parent program may CONNECT to.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace qtbox::fuzz::vsock_script {

enum Command : std::uint8_t {
    TRANSMIT = 0,
    OFFER_RX,
    RAW_DESCRIPTOR,
    NOTIFY,
    REINITIALIZE,
    PARENT_CONNECT,
    PARENT_WRITE,
    RAW_INDEX,
    COMMAND_COUNT,
};

constexpr std::uint64_t GUEST_CID = 5;
// 9000 the heartbeat, 9001 an echo service, 5000 nobody listens.
constexpr std::array<std::uint32_t, 3> PARENT_PORTS { 9000, 9001, 5000 };
constexpr std::uint8_t NEWEST_PARENT_PORT = 3;
constexpr std::array<std::uint32_t, 7> GUEST_PORTS { 1024, 1025, 1026, 1027, 9000, 9001, 5000 };
// The guest_port byte of GUEST_PORTS' 9000, 9001 and 5000.
constexpr std::uint8_t GUEST_LISTENS_ON = 4;

class Builder {
public:
    Bytes const& bytes() const { return m_bytes; }

    Builder& transmit(std::uint8_t op, std::uint8_t guest_port, std::uint8_t parent_port,
        std::uint16_t payload_size = 0, std::uint8_t flags = 0, std::vector<std::uint16_t> cuts = {},
        std::uint32_t buf_alloc = 256 * 1024, std::uint32_t fwd_cnt = 0)
    {
        header(0, op, guest_port, parent_port, payload_size, flags, cuts, buf_alloc, fwd_cnt);
        return *this;
    }
    // A header with every field the script can bend: addresses, type, len.
    Builder& transmit_bent(std::uint8_t op, std::uint64_t src_cid, std::uint64_t dst_cid, std::uint16_t type,
        std::uint32_t len, std::uint16_t payload_size)
    {
        header(0x1F, op, 0, 0, payload_size, 0, {}, 256 * 1024, 0);
        u32(static_cast<std::uint32_t>(src_cid));
        u32(static_cast<std::uint32_t>(src_cid >> 32));
        u32(static_cast<std::uint32_t>(dst_cid));
        u32(static_cast<std::uint32_t>(dst_cid >> 32));
        u16(type);
        u32(len);
        return *this;
    }
    Builder& offer_rx(std::uint8_t count, std::vector<std::uint16_t> pieces)
    {
        m_bytes.push_back(OFFER_RX);
        m_bytes.push_back(static_cast<std::uint8_t>(count - 1));
        for (std::uint8_t i = 0; i < count; ++i) {
            m_bytes.push_back(static_cast<std::uint8_t>(pieces.size() - 1));
            for (auto piece : pieces)
                u16(piece);
        }
        return *this;
    }
    Builder& raw_descriptor(std::uint8_t queue, std::uint8_t index, std::uint32_t address, std::uint32_t length,
        std::uint8_t flags, std::uint8_t next, bool publish)
    {
        m_bytes.insert(m_bytes.end(), { RAW_DESCRIPTOR, queue, index });
        u32(address);
        u32(length);
        m_bytes.insert(m_bytes.end(), { flags, next, static_cast<std::uint8_t>(publish) });
        return *this;
    }
    Builder& notify(std::uint8_t queue)
    {
        m_bytes.insert(m_bytes.end(), { NOTIFY, queue });
        return *this;
    }
    Builder& reinitialize(bool event_index)
    {
        m_bytes.insert(m_bytes.end(), { REINITIALIZE, static_cast<std::uint8_t>(event_index) });
        return *this;
    }
    Builder& parent_connect(std::uint8_t parent_port)
    {
        m_bytes.insert(m_bytes.end(), { PARENT_CONNECT, parent_port });
        return *this;
    }
    Builder& parent_write(std::uint8_t client, std::uint16_t size)
    {
        m_bytes.insert(m_bytes.end(), { PARENT_WRITE, client });
        u16(size);
        m_bytes.push_back(0x42);
        return *this;
    }
    Builder& raw_index(std::uint8_t queue, std::uint16_t index)
    {
        m_bytes.insert(m_bytes.end(), { RAW_INDEX, queue });
        u16(index);
        return *this;
    }

private:
    void header(std::uint8_t shape, std::uint8_t op, std::uint8_t guest_port, std::uint8_t parent_port,
        std::uint16_t payload_size, std::uint8_t flags, std::vector<std::uint16_t> const& cuts, std::uint32_t buf_alloc,
        std::uint32_t fwd_cnt)
    {
        m_bytes.insert(m_bytes.end(), { TRANSMIT, shape, op, guest_port, parent_port, flags });
        u32(buf_alloc);
        u32(fwd_cnt);
        u16(payload_size);
        m_bytes.push_back(0xB7);
        m_bytes.push_back(static_cast<std::uint8_t>(cuts.size()));
        for (auto cut : cuts)
            u16(cut);
    }
    void u16(std::uint16_t value)
    {
        m_bytes.push_back(static_cast<std::uint8_t>(value));
        m_bytes.push_back(static_cast<std::uint8_t>(value >> 8));
    }
    void u32(std::uint32_t value)
    {
        for (int shift = 0; shift < 32; shift += 8)
            m_bytes.push_back(static_cast<std::uint8_t>(value >> shift));
    }

    Bytes m_bytes;
};

} // namespace qtbox::fuzz::vsock_script
