// One inference of a keras_cnas model with TensorFlow Lite Micro.
//
// It includes the two headers `tools/search.py ... --export=int8 --micro` (or
// `tools/export_tflite.py --micro`) writes next to model.tflite:
//   model_data.h      the model array, kTensorArenaSize and the input / output quantization
//   model_data_ops.h  ModelDataOpResolver: a MicroMutableOpResolver with exactly the model's ops
// and links model_data.cc. See README.md for the build line.
//
// Usage: micro_example [input.bin]
//   input.bin holds kInputElements values of the model's input type (int8 for an --int8_io
//   model, float32 otherwise), as the application's sensor code would fill them; without it
//   the input is all zero_point (a blank image). Prints the output tensor as real numbers
//   (dequantized with kOutputScale / kOutputZeroPoint), one per line, then the arena used.

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "model_data.h"
#include "model_data_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// TFLite Micro plans every tensor inside this one buffer; 16-byte aligned as it asks.
alignas(16) uint8_t tensor_arena[kTensorArenaSize];

bool ReadInput(const char* path, TfLiteTensor* input) {
  FILE* file = std::fopen(path, "rb");
  if (file == nullptr) {
    std::fprintf(stderr, "input: cannot open %s\n", path);
    return false;
  }
  const size_t read = std::fread(input->data.raw, 1, input->bytes, file);
  std::fclose(file);
  if (read != input->bytes) {
    std::fprintf(stderr, "input: %s holds %zu bytes, the model's input takes %zu\n", path, read,
                 input->bytes);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    std::fprintf(stderr, "model: schema version %u, this runtime reads %d\n",
                 static_cast<unsigned>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }
  ModelDataOpResolver resolver;
  if (RegisterModelDataOps(resolver) != kTfLiteOk) {
    std::fprintf(stderr, "resolver: an operator could not be registered\n");
    return 1;
  }
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    std::fprintf(stderr, "arena: kTensorArenaSize = %d bytes is too small\n", kTensorArenaSize);
    return 1;
  }
  TfLiteTensor* input = interpreter.input(0);
  if (argc > 1) {
    if (!ReadInput(argv[1], input)) return 1;
  } else if (input->type == kTfLiteInt8) {
    std::memset(input->data.int8, kInputZeroPoint, input->bytes);
  } else {
    std::memset(input->data.raw, 0, input->bytes);
  }
  if (interpreter.Invoke() != kTfLiteOk) {
    std::fprintf(stderr, "invoke failed\n");
    return 1;
  }
  const TfLiteTensor* output = interpreter.output(0);
  for (int i = 0; i < kOutputElements; ++i) {
    const float value = output->type == kTfLiteInt8
                            ? kOutputScale * (output->data.int8[i] - kOutputZeroPoint)
                            : output->data.f[i];
    std::printf("%.6f\n", value);
  }
  std::fprintf(stderr, "arena used: %zu of %d bytes\n", interpreter.arena_used_bytes(),
               kTensorArenaSize);
  return 0;
}
