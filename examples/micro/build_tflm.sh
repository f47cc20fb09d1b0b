#!/usr/bin/env bash
# Builds TensorFlow Lite Micro's framework and reference kernels into libtflm.a with the host
# g++, from a tflite-micro checkout and headers already on disk (nothing is downloaded, unlike
# its own Makefile's third_party_downloads). For testing an exported model on this machine;
# a firmware builds TFLite Micro with its own toolchain and optimized kernels.
#
#   examples/micro/build_tflm.sh TFLM_ROOT FLATBUFFERS_INCLUDE GEMMLOWP_INCLUDE RUY_INCLUDE OUT_DIR
set -euo pipefail
root=$1 flatbuffers=$2 gemmlowp=$3 ruy=$4 out=$5
mkdir -p "$out/obj"
cd "$root"
sources=$(ls tensorflow/lite/micro/*.cc tensorflow/lite/micro/kernels/*.cc \
    tensorflow/lite/micro/arena_allocator/*.cc tensorflow/lite/micro/memory_planner/*.cc \
    tensorflow/lite/micro/tflite_bridge/*.cc \
    tensorflow/compiler/mlir/lite/core/api/error_reporter.cc \
    tensorflow/compiler/mlir/lite/schema/schema_utils.cc \
    tensorflow/lite/core/api/flatbuffer_conversions.cc tensorflow/lite/core/api/tensor_utils.cc \
    tensorflow/lite/core/c/common.cc tensorflow/lite/kernels/internal/*.cc \
    tensorflow/lite/kernels/kernel_util.cc \
    | grep -v -e _test -e test_helper -e fake_micro_context -e recording -e mock_ -e testing/)
failed=0
for src in $sources; do
  obj="$out/obj/$(echo "$src" | tr / _).o"
  [ -s "$obj" ] && continue
  if ! g++ -std=c++17 -O1 -fno-exceptions -fno-rtti -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -I. \
      -I"$flatbuffers" -I"$gemmlowp" -I"$ruy" -c "$src" -o "$obj" 2> "$obj.err"; then
    echo "not built: $src (see $obj.err)"; rm -f "$obj"; failed=$((failed + 1))
  fi
done
ar rcs "$out/libtflm.a" "$out"/obj/*.o
echo "$out/libtflm.a: $(ls "$out"/obj/*.o | wc -l) objects, $failed sources not built"
