#include <qtbox/base/error.hpp>

#include <cstring>

namespace qtbox {

Error Error::from_errno(std::string_view what, int code)
{
    std::string message(what);
    message += ": ";
    message += std::strerror(code);
    return Error(std::move(message), code, true);
}

Error Error::from_string(std::string message, int code)
{
    return Error(std::move(message), code, false);
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

} // namespace qtbox
