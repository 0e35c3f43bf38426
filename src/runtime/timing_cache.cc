#include "runtime/timing_cache.h"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "engine/engine_file.h"

namespace kestrel::runtime {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic = "kestrel-timing-cache";
constexpr int kVersion = 1;

std::string hex16(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

uint64_t checksum(std::string_view bytes) {
    return engine::fnv1a64(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

bool plain_field(std::string_view s) { return s.find_first_of("\t\r\n") == std::string_view::npos; }

// Shortest text that reads back as the same double.
std::string format_ms(double ms) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, ms);
    return std::string(buf, r.ptr);
}

std::vector<std::string_view> split(std::string_view line, char sep) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t i = 0; i <= line.size(); ++i)
        if (i == line.size() || line[i] == sep) {
            out.push_back(line.substr(start, i - start));
            start = i + 1;
        }
    return out;
}

// The temporary file save() writes beside `path`: per process, so two exports do not share one.
std::string temp_path(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

}  // namespace

std::string ConvProblem::key() const {
    std::ostringstream os;
    os << type << " n" << batch << " x" << in_h << "x" << in_w << "x" << c << " k" << k << " f" << kh << "x" << kw
       << " s" << stride_h << "x" << stride_w << " p" << pad_top << "x" << pad_left << " d" << dil_h << "x" << dil_w
       << " g" << groups << " y" << out_h << "x" << out_w << " silu" << (silu ? 1 : 0) << " res" << (residual ? 1 : 0)
       << " xs" << x_stride << "@" << x_align << " ys" << y_stride << "@" << y_align << " rs" << residual_stride << "@"
       << residual_align;
    return os.str();
}

TimingCache::TimingCache(std::string environment) : environment_(std::move(environment)) {
    KS_CHECK(plain_field(environment_), "timing cache: the environment must be one line");
}

std::optional<double> TimingCache::find(const std::string& problem_key, int tactic,
                                        const std::string& tactic_name) const {
    auto it = entries_.find({problem_key, tactic});
    if (it == entries_.end() || it->second.tactic_name != tactic_name) return std::nullopt;
    return it->second.ms;
}

void TimingCache::insert(const std::string& problem_key, int tactic, const std::string& tactic_name, double ms) {
    KS_CHECK(!problem_key.empty() && plain_field(problem_key), "timing cache: bad problem key '", problem_key, "'");
    KS_CHECK(!tactic_name.empty() && plain_field(tactic_name), "timing cache: bad tactic name '", tactic_name, "'");
    KS_CHECK(tactic >= 0, "timing cache: bad tactic id ", tactic);
    KS_CHECK(std::isfinite(ms) && ms >= 0, "timing cache: bad time ", ms, " ms");
    entries_[{problem_key, tactic}] = {tactic_name, ms};
}

std::string TimingCache::serialize() const {
    std::string out = std::string(kMagic) + " " + std::to_string(kVersion) + "\n";
    out += "environment " + environment_ + "\n";
    for (const auto& [key, e] : entries_)
        out += key.first + "\t" + std::to_string(key.second) + "\t" + e.tactic_name + "\t" + format_ms(e.ms) + "\n";
    out += "checksum " + hex16(checksum(out)) + "\n";
    return out;
}

TimingCache TimingCache::parse(std::string_view text, std::string_view source) {
    // Lines with their byte offsets (the checksum covers everything before its line).
    std::vector<std::pair<size_t, std::string_view>> lines;
    for (size_t at = 0; at < text.size();) {
        size_t end = text.find('\n', at);
        KS_CHECK(end != std::string_view::npos, source, ": truncated (the last line has no end)");
        lines.emplace_back(at, text.substr(at, end - at));
        at = end + 1;
    }
    KS_CHECK(!lines.empty(), source, ": empty file");
    const std::string magic = std::string(kMagic) + " ";
    KS_CHECK(lines[0].second.substr(0, magic.size()) == magic, source, ": not a Kestrel timing cache");
    std::string_view version = lines[0].second.substr(magic.size());
    KS_CHECK(version == std::to_string(kVersion), source, ": format version '", version, "' (this Kestrel reads ",
             kVersion, ")");
    const auto& last = lines.back().second;
    KS_CHECK(lines.size() >= 3 && last.substr(0, 9) == "checksum ", source, ": truncated (no checksum line)");
    KS_CHECK(last.substr(9) == hex16(checksum(text.substr(0, lines.back().first))), source,
             ": checksum mismatch (the file is corrupt or was edited)");
    KS_CHECK(lines[1].second.substr(0, 12) == "environment ", source, ": line 2 is not the environment");
    TimingCache cache{std::string(lines[1].second.substr(12))};
    for (size_t i = 2; i + 1 < lines.size(); ++i) {
        const size_t line_no = i + 1;
        auto f = split(lines[i].second, '\t');
        KS_CHECK(f.size() == 4, source, ": line ", line_no, " has ", f.size(), " fields, not 4");
        int tactic = -1;
        auto rt = std::from_chars(f[1].data(), f[1].data() + f[1].size(), tactic);
        KS_CHECK(rt.ec == std::errc() && rt.ptr == f[1].data() + f[1].size() && tactic >= 0, source, ": line ", line_no,
                 ": bad tactic id '", f[1], "'");
        double ms = -1;
        auto rm = std::from_chars(f[3].data(), f[3].data() + f[3].size(), ms);
        KS_CHECK(rm.ec == std::errc() && rm.ptr == f[3].data() + f[3].size() && std::isfinite(ms) && ms >= 0, source,
                 ": line ", line_no, ": bad time '", f[3], "'");
        KS_CHECK(!f[0].empty() && !f[2].empty(), source, ": line ", line_no, ": empty problem key or tactic name");
        std::pair<std::string, int> key{std::string(f[0]), tactic};
        KS_CHECK(!cache.entries_.count(key), source, ": line ", line_no, ": duplicate entry");
        cache.entries_[key] = {std::string(f[2]), ms};
    }
    return cache;
}

TimingCache TimingCache::load(const std::string& path, const std::string& environment, std::string* warning) {
    warning->clear();
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    if (!exists && !ec) return TimingCache(environment);
    const std::string what = "timing cache '" + path + "'";
    try {
        KS_CHECK(!ec, what, ": cannot be read (", ec.message(), ")");
        KS_CHECK(fs::is_regular_file(path, ec), what, ": not a regular file");
        std::ifstream f(path, std::ios::binary);
        KS_CHECK(f, what, ": cannot be read");
        std::stringstream ss;
        ss << f.rdbuf();
        KS_CHECK(!f.bad(), what, ": cannot be read");
        TimingCache cache = parse(ss.str(), what);
        KS_CHECK(cache.environment_ == environment, what, " was made for another GPU or Kestrel build (",
                 cache.environment_, "; this one is ", environment, ")");
        return cache;
    } catch (const Error& e) {
        *warning = std::string(e.what()) + "; timing every tactic and rewriting it";
        return TimingCache(environment);
    }
}

void TimingCache::check_writable(const std::string& path) {
    KS_CHECK(!path.empty(), "timing_cache= needs a file name");
    std::error_code ec;
    KS_CHECK(!fs::is_directory(path, ec), "timing_cache='", path, "' is a directory, not a file");
    fs::path dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    KS_CHECK(fs::is_directory(dir, ec), "timing_cache='", path, "': directory '", dir.string(), "' does not exist");
    // Probe with the file save() will write and rename: what matters is creating a file there.
    const std::string tmp = temp_path(path);
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    KS_CHECK(f != nullptr, "timing_cache='", path, "' cannot be written (directory '", dir.string(),
             "' is not writable)");
    std::fclose(f);
    std::remove(tmp.c_str());
}

void TimingCache::save(const std::string& path) const {
    TimingCache merged = *this;
    std::string ignored;
    TimingCache on_disk = load(path, environment_, &ignored);
    for (const auto& [key, e] : on_disk.entries_) merged.entries_.insert({key, e});
    const std::string bytes = merged.serialize();
    const std::string tmp = temp_path(path);
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        KS_CHECK(f, "cannot write timing cache '", path, "'");
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        f.flush();
        if (!f) {
            f.close();
            std::remove(tmp.c_str());
            KS_FAIL("cannot write timing cache '", path, "' (disk full?)");
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        KS_FAIL("cannot write timing cache '", path, "': ", ec.message());
    }
}

}  // namespace kestrel::runtime
