// Invariants (SerenityOS's VERIFY): a condition that only a bug in qtbox can
// break, never a property of the input. Input is checked and refused with an
// Error; an invariant that fails stops the program at once, rather than
// letting it read the wrong member or past a buffer.
//
// Library code does not print (docs/ARCHITECTURE.md "Conventions"), so the
// report goes through a handler the program installs (main installs one that
// writes "<applet>: internal error: ..." on stderr); then abort().
#pragma once

#include <string_view>

namespace qtbox {

using InvariantHandler = void (*)(std::string_view what, char const* file, int line);

// Installs the reporter; nullptr (the default) reports nothing.
void set_invariant_handler(InvariantHandler handler);
[[noreturn]] void invariant_failed(std::string_view what, char const* file, int line);

} // namespace qtbox

#define VERIFY(expression)                                                         \
    do {                                                                           \
        if (!(expression)) [[unlikely]]                                            \
            ::qtbox::invariant_failed("VERIFY(" #expression ") failed", __FILE__, __LINE__); \
    } while (0)

#define VERIFY_NOT_REACHED() ::qtbox::invariant_failed("unreachable code reached", __FILE__, __LINE__)
