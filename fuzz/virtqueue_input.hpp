// The input format of the virtqueue fuzz target (fuzz/virtqueue.cpp), shared
// with the seed writer (fuzz/make_seeds.cpp). All integers little-endian; an
// input that ends early reads zeros.
//
//   u8   config     bits 0-3: log2 of the queue size (mod 9: 1..256)
//                   CONFIG_EVENT_INDEX: VIRTIO_F_EVENT_IDX negotiated
//                   CONFIG_CUSTOM_LAYOUT: u64 descriptor table, u64 available
//                     ring, u64 used ring follow (else DEFAULT_*)
//                   CONFIG_REMAP: every descriptor's address and length are
//                     folded into one of the guest RAM regions (its top two
//                     address bits pick which), a little past its end at
//                     most, so that most buffers are near or inside RAM
//                   CONFIG_RAW_SIZE: the size is a u16 that follows instead
//                     (any value, for activate()'s checks)
//   [u16]           with CONFIG_RAW_SIZE
//   [u64 × 3]       with CONFIG_CUSTOM_LAYOUT
//   u16  image      then that many bytes, copied over the descriptor table
//                   and then the available ring (flags, idx, ring, used_event)
//   ops...          each an op byte (mod OP_COUNT) and its operands, below
//
// Guest RAM (GUEST_REGIONS): 64 KiB at 0 holds the default rings and any
// buffer; 4 KiB after a gap; 64 KiB at the top of the address space; 32 MiB
// at 4 GiB, large enough for a chain over 2^32 bytes (aliased buffers).
#pragma once

#include <qtbox/kvm/memory.hpp>

#include <cstdint>
#include <vector>

namespace qtbox::fuzz::virtqueue {

constexpr std::uint8_t CONFIG_SIZE_MASK = 0x0F;
constexpr std::uint8_t CONFIG_EVENT_INDEX = 0x10;
constexpr std::uint8_t CONFIG_CUSTOM_LAYOUT = 0x20;
constexpr std::uint8_t CONFIG_REMAP = 0x40;
constexpr std::uint8_t CONFIG_RAW_SIZE = 0x80;

constexpr std::uint64_t DEFAULT_DESCRIPTOR_TABLE = 0x0000;
constexpr std::uint64_t DEFAULT_AVAILABLE_RING = 0x1000;
constexpr std::uint64_t DEFAULT_USED_RING = 0x2000;

inline std::vector<kvm::MemoryRegion> const GUEST_REGIONS = {
    { 0x0, 0x10000 },
    { 0x20000, 0x1000 },
    { 0x1'0000'0000, 32 << 20 },
    { 0xFFFF'FFFF'FFFE'0000, 0x10000 },
};
// How far past a region's end CONFIG_REMAP may put an address or a length.
constexpr std::uint64_t REMAP_SLACK = 256;

enum Op : std::uint8_t {
    Pop = 0, // pop(); a chain's head joins the in-flight list
    PushUsed, // u32 written: push_used the oldest in-flight head
    NeedsInterrupt, // needs_interrupt()
    Enable, // enable_notifications()
    Disable, // disable_notifications()
    Poke, // u16 offset, u16 value: the guest writes into the first region
    SetAvailIndex, // u16: the driver stores avail idx
    SetUsedEvent, // u16: the driver stores used_event
    SetAvailFlags, // u16: the driver stores the available ring's flags
    Publish, // u16 head: ring[avail idx] = head, avail idx + 1
    Reset, // the device resets the queue and activates it again
    WriteDescriptor, // u8 index, u64 address, u32 length, u16 flags, u16 next (remapped with CONFIG_REMAP)
    OP_COUNT,
};

} // namespace qtbox::fuzz::virtqueue
