/* driver/cmd_aot.c — `bpcc FILE.bp -o NAME.so`: the model as a shared library with a C
 * ABI, and NAME.h beside it (docs/abi.md).
 *
 *   bpcc FILE.bp -o NAME.so [--model NAME] [-march=CPU] [-O0..-O3] [options]
 *
 * The whole pipeline, with the machine stage writing the library (codegen/aot.c adds
 * the descriptor and the ABI and links the runtime in) instead of JIT-compiling: every
 * option means here what it means for train. -march=native (the default) gives a
 * library for CPUs like this one; -march=x86-64-v3 (AVX2 + FMA) one that runs on any
 * x86-64 machine of the last decade. */
#include "driver/driver.h"

int cmd_write_library(const char *path, const PipelineOptions *o) {
  PipelineOptions lo = *o;
  lo.runtime = true;
  Compilation c;
  pipeline_init(&c, path, &lo);
  bool ok = pipeline_run(&c, STAGE_MACHINE);
  pipeline_release(&c);
  return ok ? 0 : 1;
}
