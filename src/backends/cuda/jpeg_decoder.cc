// nvJPEG through dlopen. The few declarations below are the C ABI of nvjpeg.h (CUDA 13, nvJPEG
// 13.0: handle and state are opaque pointers, nvjpegImage_t is 4 channel pointers and 4 pitches,
// status 0 is success, NVJPEG_OUTPUT_RGBI is 5); nvJPEG keeps that ABI stable across releases.
#include "backends/cuda/jpeg_decoder.h"

#include <dlfcn.h>

#include <mutex>
#include <vector>

#include "core/error.h"

namespace kestrel::cuda {
namespace {

using nvjpegStatus = int;
using nvjpegHandle = void*;
using nvjpegJpegState = void*;
using nvjpegJpegStream = void*;
constexpr nvjpegStatus kSuccess = 0;
constexpr int kBackendHardware = 3;  // NVJPEG_BACKEND_HARDWARE: the GPU's JPEG engines (A100, H100)
constexpr int kOutputRgbi = 5;       // NVJPEG_OUTPUT_RGBI: interleaved RGB in channel[0]
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
    // The batched decode on the hardware backend (optional: without them every image goes through decode).
    nvjpegStatus (*create_ex)(int, void*, void*, unsigned, nvjpegHandle*) = nullptr;
    nvjpegStatus (*stream_create)(nvjpegHandle, nvjpegJpegStream*) = nullptr;
    nvjpegStatus (*stream_destroy)(nvjpegJpegStream) = nullptr;
    nvjpegStatus (*stream_parse_header)(nvjpegHandle, const unsigned char*, size_t, nvjpegJpegStream) = nullptr;
    nvjpegStatus (*batched_supported)(nvjpegHandle, nvjpegJpegStream, int*) = nullptr;
    nvjpegStatus (*batched_initialize)(nvjpegHandle, nvjpegJpegState, int, int, int) = nullptr;
    nvjpegStatus (*batched_decode)(nvjpegHandle, nvjpegJpegState, const unsigned char* const*, const size_t*,
                                   NvjpegImage*, cudaStream_t) = nullptr;
    bool batched = false;  // all of the above were found
    std::string error;     // why the library could not be loaded (empty when it was)
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
        a.batched = bind(lib, "nvjpegCreateEx", &a.create_ex) &&
                    bind(lib, "nvjpegJpegStreamCreate", &a.stream_create) &&
                    bind(lib, "nvjpegJpegStreamDestroy", &a.stream_destroy) &&
                    bind(lib, "nvjpegJpegStreamParseHeader", &a.stream_parse_header) &&
                    bind(lib, "nvjpegDecodeBatchedSupported", &a.batched_supported) &&
                    bind(lib, "nvjpegDecodeBatchedInitialize", &a.batched_initialize) &&
                    bind(lib, "nvjpegDecodeBatched", &a.batched_decode);
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
    // The hardware backend's handle, state and a header-parsing stream; null where the GPU has no
    // JPEG engine (nvjpegCreateEx answers "architecture mismatch") or the library lacks the API.
    nvjpegHandle hw = nullptr;
    nvjpegJpegState hw_jpeg = nullptr;
    nvjpegJpegStream hw_stream = nullptr;
    int hw_batch = 0;  // the batch size hw_jpeg was initialised for
    std::mutex mutex;  // one JPEG state each: decodes of one decoder run one at a time
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
    if (a.batched && a.create_ex(kBackendHardware, nullptr, nullptr, 0, &state_->hw) == kSuccess) {
        if (a.state_create(state_->hw, &state_->hw_jpeg) != kSuccess ||
            a.stream_create(state_->hw, &state_->hw_stream) != kSuccess)
            release_hardware();
    } else {
        state_->hw = nullptr;
    }
}

void JpegDecoder::release_hardware() {
    const Api& a = api();
    if (state_->hw_stream) a.stream_destroy(state_->hw_stream);
    if (state_->hw_jpeg) a.state_destroy(state_->hw_jpeg);
    if (state_->hw) a.destroy(state_->hw);
    state_->hw_stream = state_->hw_jpeg = state_->hw = nullptr;
}

bool JpegDecoder::hardware() const { return state_->hw != nullptr; }

JpegDecoder::~JpegDecoder() {
    if (!state_) return;
    const Api& a = api();
    release_hardware();
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

void JpegDecoder::check_destination(const uint8_t* bytes, size_t n, const std::string& what, size_t pitch) {
    const Size sz = size(bytes, n, what);
    KS_CHECK(pitch >= static_cast<size_t>(sz.width) * 3, "cannot decode ", what, ": row pitch ", pitch, " < 3 x ",
             sz.width);
}

void JpegDecoder::decode(const uint8_t* bytes, size_t n, const std::string& what, uint8_t* dst, size_t pitch,
                         cudaStream_t stream) {
    check_destination(bytes, n, what, pitch);
    NvjpegImage out{};
    out.channel[0] = dst;
    out.pitch[0] = pitch;
    std::lock_guard<std::mutex> lock(state_->mutex);
    const nvjpegStatus s = api().decode(state_->handle, state_->jpeg, bytes, n, kOutputRgbi, &out, stream);
    KS_CHECK(s == kSuccess, "cannot decode ", what, ": nvJPEG: ", status_text(s));
}

void JpegDecoder::decode_batch(const std::vector<Job>& jobs, cudaStream_t stream) {
    const Api& a = api();
    std::vector<const Job*> rest;  // what the hardware does not take: one by one through decode()
    std::vector<const unsigned char*> data;
    std::vector<size_t> lengths;
    std::vector<NvjpegImage> out;
    {
        std::lock_guard<std::mutex> lock(state_->mutex);
        for (const Job& j : jobs) {
            int unsupported = 1;  // nvJPEG's convention: 0 = the batched decode takes it
            if (state_->hw && is_jpeg(j.bytes, j.n) &&
                a.stream_parse_header(state_->hw, j.bytes, j.n, state_->hw_stream) == kSuccess &&
                a.batched_supported(state_->hw, state_->hw_stream, &unsupported) != kSuccess)
                unsupported = 1;
            if (unsupported != 0) {
                rest.push_back(&j);
                continue;
            }
            check_destination(j.bytes, j.n, *j.what, j.pitch);
            data.push_back(j.bytes);
            lengths.push_back(j.n);
            NvjpegImage im{};
            im.channel[0] = j.dst;
            im.pitch[0] = j.pitch;
            out.push_back(im);
        }
        if (!data.empty()) {
            const int count = static_cast<int>(data.size());
            nvjpegStatus s = kSuccess;
            if (state_->hw_batch != count) {
                s = a.batched_initialize(state_->hw, state_->hw_jpeg, count, 1, kOutputRgbi);
                state_->hw_batch = s == kSuccess ? count : 0;
            }
            if (s == kSuccess)
                s = a.batched_decode(state_->hw, state_->hw_jpeg, data.data(), lengths.data(), out.data(), stream);
            if (s != kSuccess) {
                // A stream whose header the hardware accepts but whose data it cannot decode: every image
                // of the batch again through decode(), which names the file it fails on.
                state_->hw_batch = 0;  // nvJPEG asks for a new initialisation after a failed batch
                rest.clear();
                for (const Job& j : jobs) rest.push_back(&j);
            }
        }
    }
    for (const Job* j : rest) decode(j->bytes, j->n, *j->what, j->dst, j->pitch, stream);
}

}  // namespace kestrel::cuda
