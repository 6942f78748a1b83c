// fmt's out-of-line part, compiled once for the whole binary.
//
// Debian 12 ships fmt 9.1 as headers and a shared library only, and qtbox
// links statically, so fmt comes from its headers. Defining FMT_HEADER_ONLY
// would make every translation unit compile fmt's whole formatting core
// again: measured here, 7.1 s instead of 2.4 s for src/boot/acpi.cpp at -O3,
// which made up most of a clean build. Instead every file sees fmt's normal
// declarations, and this one file compiles the implementation the headers
// carry (format-inl.h) plus the instantiations format.h declares `extern`.
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto decimal_point_impl(locale_ref) -> char;

} // namespace detail
FMT_END_NAMESPACE
