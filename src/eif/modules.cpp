#include <qtbox/eif/modules.hpp>
#include <qtbox/eif/format.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <dirent.h>
#include <climits>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

namespace qtbox::eif {

namespace {

constexpr int MAX_MODULE_TREE_DEPTH = 32;
constexpr std::size_t MAX_MODULE_TREE_FILES = 200'000;
constexpr std::size_t MAX_MODULE_SIZE = 64 << 20;
constexpr std::size_t MAX_BUILTIN_LIST_SIZE = 4 << 20;
constexpr std::size_t MAX_RELEASE_LENGTH = 128;
constexpr std::array<std::string_view, 4> MODULE_SUFFIXES { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };

std::string canonical_module_name(std::string_view name)
{
    std::string result(name);
    for (auto& c : result) {
        if (c == '-')
            c = '_';
    }
    return result;
}

// "virtio-mmio.ko.xz" -> "virtio_mmio"; nullopt for other files.
std::optional<std::string> module_name_of(std::string_view file_name)
{
    for (auto suffix : MODULE_SUFFIXES) {
        if (file_name.size() > suffix.size() && file_name.ends_with(suffix))
            return canonical_module_name(file_name.substr(0, file_name.size() - suffix.size()));
    }
    return std::nullopt;
}

bool is_wanted(std::string const& name)
{
    for (auto wanted : GUEST_MODULES) {
        if (name == wanted)
            return true;
    }
    return false;
}

struct Search {
    std::string root;
    std::map<std::string, ModuleFile> found;
    std::size_t files_seen { 0 };

    ErrorOr<void> walk(int directory_fd, std::string const& relative, int depth)
    {
        if (depth > MAX_MODULE_TREE_DEPTH)
            return Error::from_code(EifError::LimitExceeded, fmt::format("{}: directories nest deeper than {}", root, MAX_MODULE_TREE_DEPTH));
        int stream_fd = ::dup(directory_fd);
        if (stream_fd < 0)
            return Error::from_errno("dup");
        DIR* stream = ::fdopendir(stream_fd);
        if (!stream) {
            ::close(stream_fd);
            return Error::from_errno(fmt::format("opendir {}/{}", root, relative));
        }
        std::vector<std::string> names;
        while (auto* entry = ::readdir(stream)) {
            std::string_view name = entry->d_name;
            if (name != "." && name != "..")
                names.emplace_back(name);
        }
        ::closedir(stream);
        for (auto const& name : names) {
            if (++files_seen > MAX_MODULE_TREE_FILES)
                return Error::from_code(EifError::LimitExceeded, fmt::format("{} holds more than {} files", root, MAX_MODULE_TREE_FILES));
            auto child_relative = relative.empty() ? name : relative + "/" + name;
            struct stat st { };
            if (::fstatat(directory_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
                return Error::from_errno(fmt::format("stat {}/{}", root, child_relative));
            if (S_ISDIR(st.st_mode)) {
                int child = ::openat(directory_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0)
                    return Error::from_errno(fmt::format("open {}/{}", root, child_relative));
                UniqueFd child_fd(child);
                TRY(walk(child_fd.get(), child_relative, depth + 1));
                continue;
            }
            if (!S_ISREG(st.st_mode))
                continue;
            auto module = module_name_of(name);
            if (!module || !is_wanted(*module))
                continue;
            auto [it, inserted] = found.try_emplace(*module, ModuleFile { *module, root + "/" + child_relative, child_relative });
            if (!inserted)
                return Error::from_code(EifError::MissingInput,
                    fmt::format("module {} is in {} twice: {} and {}", *module, root, it->second.relative_path, child_relative));
        }
        return {};
    }
};

// modules.builtin lists "kernel/drivers/virtio/virtio.ko", one a line.
ErrorOr<std::vector<std::string>> read_builtin(std::string const& directory)
{
    auto path = directory + "/modules.builtin";
    struct stat st { };
    if (::stat(path.c_str(), &st) < 0)
        return std::vector<std::string> {};
    auto bytes = TRY(sys::read_file(path, MAX_BUILTIN_LIST_SIZE));
    std::vector<std::string> names;
    std::string_view text = as_chars(bytes);
    while (!text.empty()) {
        auto newline = text.find('\n');
        auto line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        auto slash = line.rfind('/');
        auto file = slash == std::string_view::npos ? line : line.substr(slash + 1);
        if (auto name = module_name_of(file))
            names.push_back(*name);
    }
    return names;
}

bool is_compressed(std::string_view path)
{
    return !path.ends_with(".ko");
}

// The directory's own name when it reads as a kernel release, the way
// `make modules_install` names lib/modules/<release>: it starts with the
// version's "<major>.<minor>" ("6.12.95+deb12-cloud-amd64"). The blobs
// layout's "modules" does not, so it says nothing.
std::optional<std::string> directory_release(std::string const& root)
{
    std::string path = root;
    if (path != "/" && path.find('/') == std::string::npos)
        path = "./" + path;
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved))
        path = resolved;
    auto name = std::string_view(path).substr(path.rfind('/') + 1);
    std::size_t digits = 0;
    while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9')
        ++digits;
    if (digits == 0 || digits + 1 >= name.size() || name[digits] != '.' || name[digits + 1] < '0' || name[digits + 1] > '9')
        return std::nullopt;
    if (check_release(name).is_error())
        return std::nullopt;
    return std::string(name);
}

template<typename T>
T read_le(std::uint8_t const* bytes)
{
    T value = 0;
    for (std::size_t i = sizeof(T); i-- > 0;)
        value = static_cast<T>((value << 8) | bytes[i]);
    return value;
}

} // namespace

ErrorOr<void> check_release(std::string_view release)
{
    bool valid = !release.empty() && release.size() <= MAX_RELEASE_LENGTH && release != "." && release != "..";
    for (char c : release)
        valid = valid && c > 0x20 && c < 0x7f && c != '/';
    if (!valid)
        return Error::from_code(EifError::BadInput, fmt::format("'{}' is not a kernel release name", release.substr(0, MAX_RELEASE_LENGTH)));
    return {};
}

// ELF64 little-endian only (x86_64 modules): the section header table, the
// section name string table, then the .modinfo section's NUL-separated
// "key=value" strings. Every offset is checked against the file.
ErrorOr<std::string> module_release(std::string const& path)
{
    auto bytes = TRY(sys::read_file(path, MAX_MODULE_SIZE));
    auto fail = [&](std::string_view why) {
        return Error::from_code(EifError::MissingInput, fmt::format("{}: {}", path, why));
    };
    if (bytes.size() < 64 || bytes[0] != 0x7f || bytes[1] != 'E' || bytes[2] != 'L' || bytes[3] != 'F')
        return fail("not an ELF kernel module");
    if (bytes[4] != 2 || bytes[5] != 1)
        return fail("not a 64-bit little-endian ELF module");
    auto section_offset = read_le<std::uint64_t>(&bytes[0x28]);
    auto entry_size = read_le<std::uint16_t>(&bytes[0x3a]);
    auto count = read_le<std::uint16_t>(&bytes[0x3c]);
    auto names_index = read_le<std::uint16_t>(&bytes[0x3e]);
    if (entry_size < 64 || names_index >= count || section_offset > bytes.size()
        || static_cast<std::uint64_t>(count) * entry_size > bytes.size() - section_offset)
        return fail("ELF section header table out of bounds");
    auto section = [&](std::size_t index) { return &bytes[section_offset + index * entry_size]; };
    auto range = [&](std::uint8_t const* header, std::uint64_t& offset, std::uint64_t& size) {
        offset = read_le<std::uint64_t>(header + 0x18);
        size = read_le<std::uint64_t>(header + 0x20);
        return offset <= bytes.size() && size <= bytes.size() - offset;
    };
    std::uint64_t names_offset = 0, names_size = 0;
    if (!range(section(names_index), names_offset, names_size))
        return fail("ELF section name table out of bounds");
    for (std::size_t i = 0; i < count; ++i) {
        auto name_offset = read_le<std::uint32_t>(section(i));
        if (name_offset >= names_size)
            continue;
        std::string_view names(reinterpret_cast<char const*>(&bytes[names_offset]), names_size);
        auto name = names.substr(name_offset);
        name = name.substr(0, name.find('\0'));
        if (name != ".modinfo")
            continue;
        std::uint64_t info_offset = 0, info_size = 0;
        if (!range(section(i), info_offset, info_size))
            return fail(".modinfo out of bounds");
        std::string_view info(reinterpret_cast<char const*>(&bytes[info_offset]), info_size);
        while (!info.empty()) {
            auto end = info.find('\0');
            auto item = info.substr(0, end);
            info.remove_prefix(end == std::string_view::npos ? info.size() : end + 1);
            if (!item.starts_with("vermagic="))
                continue;
            item.remove_prefix(9);
            auto release = std::string(item.substr(0, item.find(' ')));
            TRY(check_release(release));
            return release;
        }
        return fail("no vermagic in .modinfo");
    }
    return fail("no .modinfo section");
}

ErrorOr<std::optional<std::string>> bzimage_release(std::string const& path)
{
    auto fd = TRY(sys::open(path, O_RDONLY));
    auto st = TRY(sys::fstat(fd.get()));
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    std::array<std::uint8_t, 0x210> setup {};
    if (size < setup.size())
        return std::optional<std::string> {};
    TRY(sys::pread_exact(fd.get(), setup.data(), setup.size(), 0));
    // Linux boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at
    // 0x202, protocol version at 0x206, kernel_version at 0x20e holds the
    // string's offset minus 0x200.
    if (std::memcmp(&setup[0x202], "HdrS", 4) != 0)
        return std::optional<std::string> {};
    auto pointer = read_le<std::uint16_t>(&setup[0x20e]);
    if (pointer == 0)
        return std::optional<std::string> {};
    std::uint64_t offset = static_cast<std::uint64_t>(pointer) + 0x200;
    std::array<char, MAX_RELEASE_LENGTH + 1> text {};
    if (offset >= size)
        return Error::from_code(EifError::Malformed, fmt::format("{}: kernel_version points past the end", path));
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(text.size() - 1, size - offset));
    TRY(sys::pread_exact(fd.get(), text.data(), take, offset));
    std::string_view version(text.data(), strnlen(text.data(), take));
    auto release = std::string(version.substr(0, version.find(' ')));
    TRY(check_release(release));
    return std::optional<std::string>(release);
}

ErrorOr<GuestModules> find_guest_modules(std::string const& directory, std::optional<std::string> const& release_hint,
    std::optional<std::string> const& kernel_release)
{
    int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return Error::from_code(EifError::MissingInput, fmt::format("modules directory {}: {}", directory, std::strerror(errno)));
    UniqueFd root(fd);
    Search search;
    search.root = directory;
    while (search.root.size() > 1 && search.root.back() == '/')
        search.root.pop_back();
    TRY(search.walk(root.get(), "", 0));
    auto builtin = TRY(read_builtin(directory));

    GuestModules result;
    for (auto wanted : GUEST_MODULES) {
        std::string name(wanted);
        auto it = search.found.find(name);
        if (it != search.found.end()) {
            result.files.push_back(it->second);
            continue;
        }
        if (std::find(builtin.begin(), builtin.end(), name) != builtin.end()) {
            result.builtin.push_back(name);
            continue;
        }
        return Error::from_code(EifError::MissingInput,
            fmt::format("module {} is not under {} (looked for {}.ko, .ko.xz, .ko.zst, .ko.gz) and modules.builtin does not list it",
                name, directory, name));
    }

    // Every place that names the release must name the same one: the
    // kernel.release file, the bzImage's version string, the directory's
    // name, and each uncompressed module's vermagic (a compressed module's
    // vermagic is not read: any of the others stands for it).
    struct Claim {
        std::string source;
        std::string release;
    };
    std::vector<Claim> claims;
    if (release_hint) {
        TRY(check_release(*release_hint));
        claims.push_back({ "kernel.release", *release_hint });
    }
    if (kernel_release) {
        TRY(check_release(*kernel_release));
        claims.push_back({ "the kernel's version string", *kernel_release });
    }
    if (auto named = directory_release(search.root))
        claims.push_back({ "the modules directory's name", *named });
    for (auto const& file : result.files) {
        if (!is_compressed(file.host_path))
            claims.push_back({ file.relative_path, TRY(module_release(file.host_path)) });
    }
    for (auto const& claim : claims) {
        if (claim.release != claims.front().release)
            return Error::from_code(EifError::MissingInput,
                fmt::format("the kernel and its modules are for different releases: {} says {}, {} says {}",
                    claims.front().source, claims.front().release, claim.source, claim.release));
    }
    if (result.files.empty())
        return result;
    if (claims.empty())
        return Error::from_code(EifError::MissingInput,
            fmt::format("cannot tell the kernel release of {}: its modules are compressed, the directory is not named after a release, "
                        "and the kernel has no version string (hint: pass the extracted lib/modules/<release> directory itself)",
                directory));
    result.release = claims.front().release;
    return result;
}

} // namespace qtbox::eif
