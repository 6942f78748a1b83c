#include <qtbox/base/error.hpp>
#include <qtbox/base/verify.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace qtbox {

Error Error::from_errno(std::string_view what, int code)
{
    std::string message(what);
    message += ": ";
    message += std::strerror(code);
    return Error(std::move(message), &detail::errno_domain_id, code);
}

Error Error::from_string(std::string message)
{
    return Error(std::move(message), nullptr, 0);
}

Error Error::context(std::string_view what) &&
{
    std::string message(what);
    if (!m_message.empty()) {
        message += ": ";
        message += m_message;
    }
    m_message = std::move(message);
    return std::move(*this);
}

namespace {

std::atomic<InvariantHandler> g_invariant_handler { nullptr };

} // namespace

void set_invariant_handler(InvariantHandler handler)
{
    g_invariant_handler.store(handler);
}

void invariant_failed(std::string_view what, char const* file, int line)
{
    if (auto handler = g_invariant_handler.load())
        handler(what, file, line);
    std::abort();
}

} // namespace qtbox
