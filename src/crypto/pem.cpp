#include <qtbox/crypto/pem.hpp>

#include "support.hpp"

#include <fmt/format.h>

namespace qtbox::crypto {

namespace {

constexpr std::string_view BEGIN = "-----BEGIN ";
constexpr std::string_view END = "-----END ";
constexpr std::string_view DASHES = "-----";
constexpr std::size_t LINE_LENGTH = 64;

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

} // namespace

std::string pem_encode(std::string_view label, ByteView der)
{
    std::string body = base64_encode(der);
    std::string text;
    text.reserve(body.size() + body.size() / LINE_LENGTH + 2 * label.size() + 40);
    text += fmt::format("{}{}{}\n", BEGIN, label, DASHES);
    for (std::size_t offset = 0; offset < body.size(); offset += LINE_LENGTH) {
        text += std::string_view(body).substr(offset, LINE_LENGTH);
        text += '\n';
    }
    text += fmt::format("{}{}{}\n", END, label, DASHES);
    // The base64 of a private key is as secret as the key.
    secure_zero(body.data(), body.size());
    return text;
}

bool looks_like_pem(ByteView data)
{
    auto text = as_chars(data);
    std::size_t start = 0;
    while (start < text.size() && is_space(text[start]))
        ++start;
    return text.substr(start).starts_with(BEGIN);
}

ErrorOr<std::vector<PemBlock>> pem_decode(std::string_view text)
{
    std::vector<PemBlock> blocks;
    std::size_t position = 0;
    while (true) {
        // A BEGIN line starts at the beginning of a line (RFC 7468 §2).
        std::size_t begin = text.find(BEGIN, position);
        while (begin != std::string_view::npos && begin != 0 && text[begin - 1] != '\n')
            begin = text.find(BEGIN, begin + 1);
        if (begin == std::string_view::npos)
            break;
        if (blocks.size() == MAX_PEM_BLOCKS)
            return failure_error(CryptoError::TooLarge, fmt::format("PEM: more than {} blocks", MAX_PEM_BLOCKS));
        std::size_t label_start = begin + BEGIN.size();
        std::size_t label_end = text.find(DASHES, label_start);
        std::size_t line_end = text.find('\n', label_start);
        if (label_end == std::string_view::npos || (line_end != std::string_view::npos && label_end > line_end))
            return failure_error(CryptoError::Malformed, "PEM: unterminated BEGIN line");
        std::string label(text.substr(label_start, label_end - label_start));
        std::string end_line = fmt::format("{}{}{}", END, label, DASHES);
        std::size_t body_start = label_end + DASHES.size();
        std::size_t end = text.find(end_line, body_start);
        if (end == std::string_view::npos)
            return failure_error(CryptoError::Malformed, fmt::format("PEM: no \"{}\" line", end_line));
        auto body = text.substr(body_start, end - body_start);
        if (body.find(':') != std::string_view::npos)
            return failure_error(CryptoError::Unsupported,
                fmt::format("PEM: block \"{}\" has RFC 1421 headers (encrypted keys are not supported)", label));
        // base64 is 4/3 of the DER: bound the text before decoding it.
        if (body.size() > MAX_PEM_BLOCK_SIZE * 4 / 3 + MAX_PEM_BLOCK_SIZE / 32 + 16)
            return failure_error(CryptoError::TooLarge, fmt::format("PEM: block \"{}\" larger than {} bytes", label, MAX_PEM_BLOCK_SIZE));
        auto der = base64_decode(body);
        if (der.is_error())
            return failure_error(CryptoError::Malformed, fmt::format("PEM: block \"{}\": {}", label, der.error().message()));
        if (der.value().size() > MAX_PEM_BLOCK_SIZE)
            return failure_error(CryptoError::TooLarge, fmt::format("PEM: block \"{}\" larger than {} bytes", label, MAX_PEM_BLOCK_SIZE));
        if (der.value().empty())
            return failure_error(CryptoError::Malformed, fmt::format("PEM: block \"{}\" is empty", label));
        blocks.push_back({ std::move(label), der.release_value() });
        position = end + end_line.size();
    }
    return blocks;
}

} // namespace qtbox::crypto
