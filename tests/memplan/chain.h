/* tests/memplan/chain.h — hand-built grad functions for the memory-planning tests.
 *
 * build_chain(): an L-layer tanh MLP of width W with a mean-of-squares loss and its
 * backward written out by hand, in the shape autodiff gives (forward, then backward
 * instructions flagged IF_BACKWARD with `from` and `rule`, then loss and grad sinks):
 *
 *   h0 = x : f32[B,W]
 *   m_i = matmul h_{i-1}, W_i ; z_i = add m_i, b_i ; h_i = tanh z_i      i = 1..L
 *   sq = mul h_L, h_L ; l = mean sq axis=all
 *   dh_L = 2 * h_L * broadcast(1 / size(sq))
 *   dz_i = tanh_grad h_i, dh_i ; db_i = sum_to dz_i ; dW_i = matmul_tn h_{i-1}, dz_i
 *   dh_{i-1} = matmul_nt dz_i, W_i
 */
#ifndef TESTS_MEMPLAN_CHAIN_H
#define TESTS_MEMPLAN_CHAIN_H

#include "ir/ir.h"

static inline SrcLoc chain_loc(int line) { return (SrcLoc){-1, line, 1, 0}; }

static inline int32_t bwd(Func *f, int32_t v, int32_t from, const char *rule) {
  f->insts[v].flags |= IF_BACKWARD;
  f->insts[v].from = from;
  f->insts[v].rule = ir_intern(f->mod, rule);
  return v;
}

static inline Func *build_chain(Module *m, int L, int64_t W, DType dt) {
  Func *f = ir_func_new(m, "chain");
  f->cse = false;
  int64_t bw[2] = {DIM_BATCH, W}, ww[2] = {W, W}, w1[1] = {W};
  TypeId tbw = ir_type(m, dt, 2, bw), tww = ir_type(m, dt, 2, ww), tw = ir_type(m, dt, 1, w1);
  int32_t h[64], Wp[64], bp[64], z[64];
  h[0] = ir_input(f, "x", 0, tbw, chain_loc(1));
  for (int i = 1; i <= L; i++) {
    char name[32];
    snprintf(name, sizeof name, "l%d.W", i);
    Wp[i] = ir_param(f, name, tww, INIT_XAVIER_UNIFORM, 0, 0, chain_loc(1 + i));
    snprintf(name, sizeof name, "l%d.b", i);
    bp[i] = ir_param(f, name, tw, INIT_UNIFORM, -0.1, 0.1, chain_loc(1 + i));
    int32_t mm = ir_binary(f, OP_MATMUL, h[i - 1], Wp[i], chain_loc(1 + i));
    z[i] = ir_binary(f, OP_ADD, mm, bp[i], chain_loc(1 + i));
    h[i] = ir_unary(f, OP_TANH, z[i], chain_loc(1 + i));
  }
  int32_t sq = ir_binary(f, OP_MUL, h[L], h[L], chain_loc(50));
  int32_t loss = ir_reduce(f, OP_MEAN, sq, IR_AXIS_ALL, false, chain_loc(50));
  /* backward */
  int32_t one = bwd(f, ir_const(f, 1.0, ir_type_scalar(m, dt), chain_loc(50)), loss, "mean.seed");
  int32_t n = bwd(f, ir_size(f, sq, IR_AXIS_ALL, chain_loc(50)), loss, "mean.dx");
  int32_t inv = bwd(f, ir_binary(f, OP_DIV, one, n, chain_loc(50)), loss, "mean.dx");
  int32_t dsq = bwd(f, ir_to_type(f, OP_BROADCAST, inv, tbw, chain_loc(50)), loss, "mean.dx");
  int32_t t = bwd(f, ir_binary(f, OP_MUL, dsq, h[L], chain_loc(50)), sq, "mul.da");
  int32_t dh = bwd(f, ir_binary(f, OP_ADD, t, t, chain_loc(50)), sq, "mul.fanout");
  int32_t dW[64], db[64];
  for (int i = L; i >= 1; i--) {
    int32_t dz = bwd(f, ir_binary(f, OP_TANH_GRAD, h[i], dh, chain_loc(1 + i)), h[i], "tanh.dx");
    db[i] = bwd(f, ir_to_type(f, OP_SUM_TO, dz, tw, chain_loc(1 + i)), z[i], "add.db");
    dW[i] = bwd(f, ir_binary(f, OP_MATMUL_TN, h[i - 1], dz, chain_loc(1 + i)), z[i] - 1, "matmul.db");
    if (i > 1) dh = bwd(f, ir_binary(f, OP_MATMUL_NT, dz, Wp[i], chain_loc(1 + i)), z[i] - 1, "matmul.da");
  }
  ir_loss(f, loss, chain_loc(50));
  for (int i = 1; i <= L; i++) {
    ir_grad(f, Wp[i], dW[i], chain_loc(1 + i));
    ir_grad(f, bp[i], db[i], chain_loc(1 + i));
  }
  return f;
}

#endif
