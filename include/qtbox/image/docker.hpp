// `--docker-uri NAME`: the one input that needs a Docker daemon (docs/FORMATS.md §8).
// Runs `docker save --output FILE NAME` (the docker client found in PATH)
// and says plainly when the client or the daemon is missing.
#pragma once

#include <qtbox/base/error.hpp>

#include <string>

namespace qtbox::image {

// A private directory under $TMPDIR, removed with everything in it when
// the object goes.
class TemporaryDirectory {
public:
    static ErrorOr<TemporaryDirectory> create(std::string const& prefix);
    ~TemporaryDirectory();
    TemporaryDirectory(TemporaryDirectory&& other) noexcept : m_path(std::move(other.m_path)) { other.m_path.clear(); }
    TemporaryDirectory& operator=(TemporaryDirectory&&) = delete;
    TemporaryDirectory(TemporaryDirectory const&) = delete;
    std::string const& path() const { return m_path; }

private:
    explicit TemporaryDirectory(std::string path) : m_path(std::move(path)) { }
    std::string m_path;
};

// Writes the image NAME as a docker-archive at `output`. ImageError::NotFound
// when there is no docker client, no daemon, or no such image (the message
// says which, with a hint to use --docker-archive or --oci).
ErrorOr<void> docker_save(std::string const& name, std::string const& output);

} // namespace qtbox::image
