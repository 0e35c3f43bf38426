// nvJPEG through dlopen. The few declarations below are the C ABI of nvjpeg.h (CUDA 13, nvJPEG
// 13.0: handle and state are opaque pointers, nvjpegImage_t is 4 channel pointers and 4 pitches,
// status 0 is success, NVJPEG_OUTPUT_RGBI is 5); nvJPEG keeps that ABI stable across releases.
#include "backends/cuda/jpeg_decoder.h"

#include <dlfcn.h>

#include <mutex>

#include "core/error.h"

namespace kestrel::cuda {
namespace {

using nvjpegStatus = int;
using nvjpegHandle = void*;
using nvjpegJpegState = void*;
constexpr nvjpegStatus kSuccess = 0;
constexpr int kOutputRgbi = 5;  // NVJPEG_OUTPUT_RGBI: interleaved RGB in channel[0]
constexpr int kMaxComponents = 4;

struct NvjpegImage {
    unsigned char* channel[kMaxComponents];
    size_t pitch[kMaxComponents];
};

struct Api {
    nvjpegStatus (*create_simple)(nvjpegHandle*) = nullptr;
    nvjpegStatus (*destroy)(nvjpegHandle) = nullptr;
    nvjpegStatus (*state_create)(nvjpegHandle, nvjpegJpegState*) = nullptr;
    nvjpegStatus (*state_destroy)(nvjpegJpegState) = nullptr;
    nvjpegStatus (*get_image_info)(nvjpegHandle, const unsigned char*, size_t, int*, int*, int*, int*) = nullptr;
    nvjpegStatus (*decode)(nvjpegHandle, nvjpegJpegState, const unsigned char*, size_t, int, NvjpegImage*,
                           cudaStream_t) = nullptr;
    std::string error;  // why the library could not be loaded (empty when it was)
};

template <typename F>
bool bind(void* lib, const char* name, F* fn) {
    *fn = reinterpret_cast<F>(dlsym(lib, name));
    return *fn != nullptr;
}

// Loaded once per process; the library stays loaded.
const Api& api() {
    static const Api loaded = [] {
        Api a;
        void* lib = nullptr;
        std::string tried;
        for (const char* name : {"libnvjpeg.so.13", "libnvjpeg.so"}) {
            lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (lib) break;
            const char* e = dlerror();
            tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name);
        }
        if (!lib) {
            a.error = "nvJPEG is not available (" + tried +
                      "): put CUDA 13's libnvjpeg.so.13 (pip package nvidia-nvjpeg) on LD_LIBRARY_PATH";
            return a;
        }
        const bool ok = bind(lib, "nvjpegCreateSimple", &a.create_simple) && bind(lib, "nvjpegDestroy", &a.destroy) &&
                        bind(lib, "nvjpegJpegStateCreate", &a.state_create) &&
                        bind(lib, "nvjpegJpegStateDestroy", &a.state_destroy) &&
                        bind(lib, "nvjpegGetImageInfo", &a.get_image_info) && bind(lib, "nvjpegDecode", &a.decode);
        if (!ok) a.error = "nvJPEG library lacks the decode API (nvjpegCreateSimple ... nvjpegDecode)";
        return a;
    }();
    return loaded;
}

const char* status_text(nvjpegStatus s) {
    switch (s) {
        case 1:
            return "not initialised";
        case 2:
            return "invalid parameter";
        case 3:
            return "bad JPEG";
        case 4:
            return "JPEG not supported";
        case 5:
            return "allocation failed";
        case 6:
            return "execution failed";
        case 7:
            return "architecture mismatch";
        case 8:
            return "internal error";
        case 9:
            return "not supported by this nvJPEG backend";
        case 10:
            return "incomplete bitstream";
        default:
            return "unknown error";
    }
}

}  // namespace

bool is_jpeg(const uint8_t* bytes, size_t size) {
    return size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

struct JpegDecoder::State {
    nvjpegHandle handle = nullptr;
    nvjpegJpegState jpeg = nullptr;
    std::mutex mutex;  // one JPEG state: decodes of one decoder run one at a time
};

JpegDecoder::JpegDecoder() {
    const Api& a = api();
    KS_CHECK(a.error.empty(), a.error);
    state_ = new State;
    nvjpegStatus s = a.create_simple(&state_->handle);
    if (s == kSuccess) s = a.state_create(state_->handle, &state_->jpeg);
    if (s != kSuccess) {
        if (state_->handle) a.destroy(state_->handle);
        delete state_;
        state_ = nullptr;
        KS_FAIL("nvJPEG failed to start: ", status_text(s), " (status ", s, ")");
    }
}

JpegDecoder::~JpegDecoder() {
    if (!state_) return;
    const Api& a = api();
    if (state_->jpeg) a.state_destroy(state_->jpeg);
    if (state_->handle) a.destroy(state_->handle);
    delete state_;
}

JpegDecoder::Size JpegDecoder::size(const uint8_t* bytes, size_t n, const std::string& what) {
    KS_CHECK(is_jpeg(bytes, n), "cannot decode ", what, ": not a JPEG file");
    int components = 0, subsampling = 0;
    int widths[kMaxComponents] = {}, heights[kMaxComponents] = {};
    const nvjpegStatus s = api().get_image_info(state_->handle, bytes, n, &components, &subsampling, widths, heights);
    KS_CHECK(s == kSuccess, "cannot decode ", what, ": nvJPEG: ", status_text(s));
    KS_CHECK(components == 1 || components == 3, "cannot decode ", what, ": nvJPEG decodes 1- or 3-component JPEGs, ",
             "this one has ", components);
    KS_CHECK(widths[0] > 0 && heights[0] > 0, "cannot decode ", what, ": nvJPEG reports an empty image");
    return {widths[0], heights[0]};
}

void JpegDecoder::decode(const uint8_t* bytes, size_t n, const std::string& what, uint8_t* dst, size_t pitch,
                         cudaStream_t stream) {
    const Size sz = size(bytes, n, what);
    KS_CHECK(pitch >= static_cast<size_t>(sz.width) * 3, "cannot decode ", what, ": row pitch ", pitch, " < 3 x ",
             sz.width);
    NvjpegImage out{};
    out.channel[0] = dst;
    out.pitch[0] = pitch;
    std::lock_guard<std::mutex> lock(state_->mutex);
    const nvjpegStatus s = api().decode(state_->handle, state_->jpeg, bytes, n, kOutputRgbi, &out, stream);
    KS_CHECK(s == kSuccess, "cannot decode ", what, ": nvJPEG: ", status_text(s));
}

}  // namespace kestrel::cuda
