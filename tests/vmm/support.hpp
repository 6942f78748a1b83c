// VMM test fixtures: a synthetic bzImage, so that unit tests never need the
// real kernel.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <cstddef>
#include <cstdint>

namespace qtbox::test {

// A minimal bzImage (boot protocol 2.15, 64-bit entry) around `payload`.
inline Bytes tiny_bzimage(std::size_t payload)
{
    Bytes image(2 * 512 + payload, 0);
    auto put = [&](std::size_t offset, std::uint64_t value, int width) {
        for (int i = 0; i < width; ++i)
            image[offset + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
    };
    image[0x1F1] = 1;
    image[0x201] = 0x6A;
    put(0x202, 0x53726448, 4);
    put(0x206, 0x020F, 2);
    image[0x211] = 1;
    put(0x22C, 0x7FFFFFFF, 4);
    put(0x230, 0x200000, 4);
    image[0x234] = 1;
    put(0x236, 3, 2);
    put(0x238, 2047, 4);
    put(0x258, 0x1000000, 8);
    put(0x260, 0x400000, 4);
    for (std::size_t i = 0; i < payload; ++i)
        image[1024 + i] = static_cast<std::uint8_t>(i * 7);
    return image;
}

} // namespace qtbox::test
