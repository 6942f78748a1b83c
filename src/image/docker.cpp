#include <qtbox/image/docker.hpp>
#include <qtbox/image/source.hpp>

#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <optional>
#include <cstring>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace qtbox::image {

namespace {

constexpr std::size_t MAX_DOCKER_STDERR = 64 << 10;
constexpr std::string_view HINT = "--docker-uri needs a running Docker daemon; without one, use --docker-archive FILE (from 'docker save') or --oci DIR";

std::string first_line(std::string_view text)
{
    auto start = text.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos)
        return {};
    text.remove_prefix(start);
    return std::string(text.substr(0, text.find('\n')));
}

std::optional<std::string> find_in_path(std::string const& program)
{
    char const* path = std::getenv("PATH");
    std::string_view directories = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        auto colon = directories.find(':');
        auto directory = directories.substr(0, colon);
        auto candidate = fmt::format("{}/{}", directory.empty() ? "." : directory, program);
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            return std::nullopt;
        directories.remove_prefix(colon + 1);
    }
}

int remove_entry(char const* path, struct stat const*, int, struct FTW*)
{
    return ::remove(path);
}

} // namespace

ErrorOr<TemporaryDirectory> TemporaryDirectory::create(std::string const& prefix)
{
    char const* tmpdir = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/{}.XXXXXX", (tmpdir && *tmpdir) ? tmpdir : "/tmp", prefix);
    if (!::mkdtemp(pattern.data()))
        return Error::from_errno(fmt::format("create a temporary directory like {}", pattern));
    return TemporaryDirectory(std::move(pattern));
}

TemporaryDirectory::~TemporaryDirectory()
{
    if (!m_path.empty())
        ::nftw(m_path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

ErrorOr<void> docker_save(std::string const& name, std::string const& output)
{
    if (name.empty() || name.starts_with("-"))
        return Error::from_code(ImageError::NotFound, fmt::format("'{}' is not an image name", name));
    auto docker = find_in_path("docker");
    if (!docker)
        return Error::from_code(ImageError::NotFound, fmt::format("docker is not installed (no 'docker' in PATH); {}", HINT));

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) < 0)
        return Error::from_errno("pipe");
    UniqueFd read_end(pipe_fds[0]);
    UniqueFd write_end(pipe_fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
    std::string arg0 = "docker", arg1 = "save", arg2 = "--output";
    std::string output_arg = output, name_arg = name;
    char* argv[] = { arg0.data(), arg1.data(), arg2.data(), output_arg.data(), name_arg.data(), nullptr };
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, docker->c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return Error::from_errno(fmt::format("run {}", *docker), rc);
    write_end.reset();

    std::string errors;
    char buffer[4096];
    for (;;) {
        auto n = sys::read(read_end.get(), buffer, sizeof(buffer));
        if (n.is_error() || n.value() == 0)
            break;
        if (errors.size() < MAX_DOCKER_STDERR)
            errors.append(buffer, std::min(n.value(), MAX_DOCKER_STDERR - errors.size()));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return Error::from_errno("waitpid docker");
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return {};
    auto message = first_line(errors);
    if (message.find("Cannot connect to the Docker daemon") != std::string::npos || message.find("docker daemon running") != std::string::npos
        || message.find("Is the docker daemon") != std::string::npos)
        return Error::from_code(ImageError::NotFound, fmt::format("no Docker daemon is running (docker said: {}); {}", message, HINT));
    if (message.empty())
        message = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status)) : std::string("killed by a signal");
    return Error::from_code(ImageError::NotFound, fmt::format("docker save {} failed: {}", name, message));
}

} // namespace qtbox::image
