/* tests/codegen/seqref.h — a C reference for the sequence-model ops (seqref.c). */
#ifndef BPCC_TESTS_CODEGEN_SEQREF_H
#define BPCC_TESTS_CODEGEN_SEQREF_H
#include "ir/ir.h"
/* outs: one tensor per output sink of f, allocated with its type (batch resolved) */
void seqref_run(Func *f, int64_t batch, const Tensor *ins, const Tensor *ps, Tensor *outs);
#endif
