#include <qtbox/base/fd.hpp>

#include <unistd.h>

namespace qtbox {

void UniqueFd::reset(int fd)
{
    // close() is not retried on EINTR: on Linux the descriptor is gone
    // either way, and a retry could close a descriptor another thread got.
    if (m_fd >= 0)
        ::close(m_fd);
    m_fd = fd;
}

} // namespace qtbox
