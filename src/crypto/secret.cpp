#include <qtbox/crypto/secret.hpp>

namespace qtbox::crypto {

SecretBytes::SecretBytes(std::size_t size) : m_bytes(size, 0) { }

SecretBytes::SecretBytes(ByteView bytes) : m_bytes(bytes.begin(), bytes.end()) { }

SecretBytes::~SecretBytes() { wipe(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : m_bytes(std::move(other.m_bytes))
{
    // A moved-from vector is empty in practice, but the standard only says
    // "valid but unspecified": wipe whatever it may still hold.
    other.wipe();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept
{
    if (this != &other) {
        wipe();
        m_bytes = std::move(other.m_bytes);
        other.wipe();
    }
    return *this;
}

void SecretBytes::wipe()
{
    if (!m_bytes.empty())
        secure_zero(m_bytes.data(), m_bytes.size());
    m_bytes.clear();
}

void SecretBytes::truncate(std::size_t size)
{
    if (size >= m_bytes.size())
        return;
    secure_zero(m_bytes.data() + size, m_bytes.size() - size);
    // Shrinking a vector never reallocates.
    m_bytes.resize(size);
}

bool operator==(SecretBytes const& a, SecretBytes const& b)
{
    return constant_time_equal(a.view(), b.view());
}

} // namespace qtbox::crypto
