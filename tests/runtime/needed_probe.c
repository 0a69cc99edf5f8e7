/* tests/runtime/needed_probe.c — a shared object that pulls in the whole runtime, so
 * check_needed.sh can inspect what a model .so built on it would depend on. */
#include "runtime/runtime.h"

int runtime_probe(void);
int runtime_probe(void) { return bprt_get_threads(); }
