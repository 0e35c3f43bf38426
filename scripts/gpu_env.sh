# Sourced by the GPU-machine rounds (gpu_round.sh, gpu_ab.sh) from the repository root:
#   source scripts/gpu_env.sh NAME
# Logs go to $LOG (default /tmp/kestrel_NAME); with the device tool's OUT set they come back as one
# tarball, $OUT/NAME_logs.tgz (the tool returns few files). Sets `shared` (what scripts/stage_gpu.sh
# staged), unpacks the staged Debian -dev packages, puts nvJPEG on the library path and records the GPU.
gpu_env_name=$1
LOG=${LOG:-/tmp/kestrel_$gpu_env_name}; mkdir -p "$LOG"
gpu_env_pack() { tar czf "$OUT/${gpu_env_name}_logs.tgz" -C "$LOG" .; }
[ -n "${OUT:-}" ] && trap gpu_env_pack EXIT
shared=$PWD/.gpu/shared
eval "$(.deps/deps.sh unpack .deps /opt/deps)"
# nvJPEG is opened at run time (src/backends/cuda/jpeg_decoder.cc): put the toolkit's copy on the path.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libnvjpeg.so.13" ] && export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-} && break
done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$LOG/gpu.txt"
