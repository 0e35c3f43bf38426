#include "cli/run_dir.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace kestrel::cli {

namespace fs = std::filesystem;

std::string run_dir(const std::string& project, const std::string& task, const std::string& mode_name,
                    const std::string& name, bool exist_ok) {
    KS_CHECK(!project.empty() || !task.empty(), "run directory needs a project or a task");
    KS_CHECK(!name.empty() || !mode_name.empty(), "run directory needs a name or a mode");
    const fs::path base = fs::path(project.empty() ? "runs/" + task : project) / (name.empty() ? mode_name : name);

    std::error_code ec;
    if (exist_ok) {
        fs::create_directories(base, ec);
        KS_CHECK(!ec && fs::is_directory(base), "cannot create run directory '", base.string(),
                 "': ", ec ? ec.message() : "a file of that name exists");
        return base.string();
    }

    if (base.has_parent_path()) {
        fs::create_directories(base.parent_path(), ec);
        KS_CHECK(!ec, "cannot create directory '", base.parent_path().string(), "': ", ec.message());
    }
    // Ultralytics checks existence and later mkdirs; creating the candidate and treating "already exists" as
    // taken does both in one step. Like increment_path, any existing entry (file or directory) skips a number.
    for (int n = 1; n < 9999; ++n) {
        const fs::path candidate = n == 1 ? base : fs::path(base.string() + std::to_string(n));
        if (fs::create_directory(candidate, ec)) return candidate.string();
        KS_CHECK(fs::exists(candidate), "cannot create run directory '", candidate.string(), "': ", ec.message());
    }
    KS_FAIL("cannot create run directory: '", base.string(), "' through '", base.string(), "9998' all exist");
}

}  // namespace kestrel::cli
