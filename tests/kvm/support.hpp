// Shared by the kvm tests: what /proc/self/smaps says of a mapping.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

namespace qtbox::test {

// The VmFlags line of the mapping that starts at `address`; empty if none.
inline std::string vm_flags(void const* address)
{
    std::ifstream smaps("/proc/self/smaps");
    char start[32];
    std::snprintf(start, sizeof(start), "%lx-", reinterpret_cast<unsigned long>(address));
    std::string line;
    bool inside = false;
    while (std::getline(smaps, line)) {
        if (line.rfind(start, 0) == 0)
            inside = true;
        else if (inside && line.rfind("VmFlags:", 0) == 0)
            return line;
    }
    return {};
}

} // namespace qtbox::test
