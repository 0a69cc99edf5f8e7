/* passes/kernel_plan.c — the kernel plan of an entry point: what it computes, which
 * instructions share one kernel (one loop nest), in which order the kernels run, and
 * where each value lives.
 *
 * The IR is not rewritten. The plan is computed in four steps:
 *
 *   1. liveness     a reverse sweep from the sinks the entry produces: training, every
 *                   sink; inference, the outputs and the loss, the instructions only the
 *                   loss needs marked (their kernels run only when the caller asks for
 *                   the loss, so a prediction never reads labels)
 *   2. placement    a live value lives in a buffer, unless it is an input or a
 *                   parameter (the caller's buffer, the parameter block), a constant an
 *                   elementwise loop splats (immediate), the one gradient of a parameter
 *                   (computed straight into the gradient block), or internal to a fused
 *                   kernel (registers); a constant a non-elementwise kernel reads is
 *                   materialized into a buffer
 *   3. fusion       the rules below group the computed instructions into kernels
 *   4. order        kernels are ordered topologically over their dependencies
 *
 * Fusion rules, each a pattern over the IR:
 *
 *   ew chain     ew(a..) : T ; ew(b..) : T          -> one loop over T
 *                (adjacent elementwise instructions of one result shape; every member
 *                stores its result, later readers are unaffected). A cast is an
 *                elementwise op whose result's dtype differs: f32[S] ; cast : bf16[S]
 *                chain, the bf16 member stored in 16 bits. An f32 value that only a
 *                cast to 16 bits reads, and a cast back to f32, are internal when the
 *                chain alone reads them: no f32 copy of a 16-bit value is stored.
 *
 *   gemm         c = matmul*(a, b)                  [M,N]
 *    epilogue    d = add(c, bias[N])                bias add, per final C tile
 *                e = relu|tanh|sigmoid(d or c)      activation (OPF_ACT), same tile
 *                g = relu_grad(x, c)                backward (OPF_ACT_GRAD): dy * (x > 0)
 *                (x may be cast(x16) to f32, x16 a 16-bit value before the product
 *                and the cast read by the mask alone: the epilogue loads x16)
 *                g = tanh_grad(y, c)                          dy * (1 - y^2)
 *                g = sigmoid_grad(y, c)                       dy * y (1 - y)
 *                conv2d(x, W) [B,O,H,W] heads the same chain: add(c, bias[O,1,1])
 *                (its bias, per channel: `reshape(b)` after the conv is accepted) and
 *                the activation; its GEMM is per image, C = y_b (codegen/conv.c).
 *    batchnorm   n = bn_norm(c or d, mean[O], rstd[O])   inference-mode batchnorm
 *    (conv2d)    s = mul(n, gamma[O,1,1])                its scale (optional)
 *                t = add(s, beta[O,1,1])                 its shift (optional)
 *                then the activation of the last one: per channel o, the affine map
 *                  y = ((acc + bias[o] - mean[o]) rstd[o]) gamma[o] + beta[o]
 *                in the unfused kernels' order of operations (no bit changes). The
 *                statistics must not depend on the convolution: in inference form
 *                (passes/modes.c) mean is the running mean and rstd
 *                1 / sqrt(running_var + eps), elementwise ops of buffers, computed
 *                before the product. Training form's batch statistics are reductions
 *                of c itself (and c has other readers): never fused.
 *                The epilogue runs on each C tile of the product after its last K
 *                block, while the tile is in L1: no extra pass over [M,N]. c (and d)
 *                are internal when the group is their only reader (no buffer at all);
 *                the value before the activation is stored beside it when something
 *                else (backward, an output) still reads it.
 *    16-bit      h = cast(last, bf16|f16)           last: the chain's final f32 value
 *    store       (g itself, the add, the activation or the mask), read by the cast
 *                alone -> the epilogue stores the final value rounded to 16 bits
 *                (codegen's CG_EP_STORE_BF16 / _F16). The product's C is still f32
 *                (the K blocks accumulate there), so the value C holds keeps a
 *                buffer: a scratch slot that dies with the kernel; the f32 value is
 *                internal only when an activation goes to the cast while C keeps the
 *                pre-activation another kernel reads (STORE_PRE). Products only:
 *                a convolution's result is cast by an elementwise kernel.
 *
 *   softmax-CE   l = softmax_xent(z, y)   [B]       forward loss rows
 *                p = softmax(z)           [B,C]     (optional member)
 *                o = onehot(y); s = sub(p, o); g = mul(s, k)   with k a scalar
 *                -> one pass over each row of the logits: max, sum of exp, the loss,
 *                and g = (softmax(z) - onehot(y)) * k. o and s are internal.
 *
 *   pool mask    h = max_pool2d_bwd(x, dy)          [B,C,H,W], x = relu(p)
 *                g = relu_grad(p, h)                h read by g alone
 *                -> one pass: dy reaches only each window's argmax, where p > 0
 *                exactly when x = relu(p) > 0, i.e. when the window's max is > 0; the
 *                pooling kernel masks with its own max (h internal, p not read: that
 *                read keeps no buffer, so p is internal to its conv when nothing else
 *                reads it, and the conv's epilogue stores relu(p) alone).
 *
 *   attention    o = attention(q, k, v); lse = extra o, 1          (codegen/attention.c)
 *                dq = attention_bwd(..); dk = extra dq, 1; dv = extra dq, 2
 *                -> one kernel of the producer and the extras it computes, always
 *                (also without fusion): the kernel writes every result, none is
 *                internal, and it takes no neighbour (it is no elementwise loop).
 *
 * A kernel never mixes what the loss alone needs with what an output needs. Each sink
 * (the copy of an output, the loss or a gradient out of the workspace; nothing for a
 * gradient computed in place) runs right after the kernel that makes its operand. Side
 * operands of a gemm epilogue (bias, x, y) must be defined before the product, so a
 * group never waits on its own result; batchnorm's may come after it when they are
 * elementwise ops and reshapes of leaves and earlier values (side_ok), and the kernels
 * that compute them then take no other instruction (an ew chain would otherwise merge
 * them with something that reads the convolution: a cycle). Kernels are then ordered
 * topologically over group dependencies, each as early as its first member allows
 * (Kahn's algorithm, smallest first-member index first); `size` reads only a shape, so
 * it is no dependency. The softmax-CE group needs its scale k (1/B, computed from
 * sizes), which is therefore scheduled before it. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static bool is_gemm(int op) { return ir_ops[op].kind == OPK_PRODUCT; }
static bool is_act(int op) { return ir_ops[op].flags & OPF_ACT; }
static bool is_mask(int op) { return ir_ops[op].flags & OPF_ACT_GRAD; }
static bool is_ew(const Inst *in) { return ir_ops[in->op].kind == OPK_EW; }

typedef struct {
  Func *f;
  const bool *computed;
  const bool *loss_only;  /* per instruction: only the loss needs it (inference) */
  int32_t *nuses;       /* readers of each value (size excluded) */
  int32_t *user;        /* the last reader of each value */
  bool *sink_use;       /* read by a sink */
  int32_t *group_of;
  int32_t head;         /* the first member of the group being formed */
  int32_t *roff, *readers;  /* every reader of v, ascending: readers[roff[v] .. roff[v+1]) */
  int32_t *side;        /* computed after the product it is a side operand of: that product, else -1 */
} Ctx;

/* v may join the group being formed: computed, in no group yet, and needed by the same
 * sinks (an output, or the loss alone) as the group's first member. */
static bool free_member(const Ctx *c, int32_t v) {
  return c->computed[v] && c->group_of[v] < 0 && c->loss_only[v] == c->loss_only[c->head];
}

/* The one reader of v, if v has exactly one and it is not a sink; else -1. */
static int32_t single_user(const Ctx *c, int32_t v) {
  return c->nuses[v] == 1 && !c->sink_use[v] ? c->user[v] : -1;
}

/* v can be computed before the product g and does not depend on it: an instruction
 * before g, a leaf, a materialized constant, or elementwise ops and reshapes of such
 * (batchnorm's rstd = 1 / sqrt(running_var + eps), reshape(gamma)), at most 8 deep. */
static bool side_ok(const Ctx *c, int32_t v, int32_t g, int depth) {
  const Inst *in = &c->f->insts[v];
  if (v < g || !c->computed[v] || in->op == OP_CONST) return true;
  if (depth > 8 || !(is_ew(in) || in->op == OP_RESHAPE)) return false;
  for (int k = 0; k < in->nargs; k++)
    if (!side_ok(c, in->args[k], g, depth + 1)) return false;
  return true;
}

/* Mark what side_ok(v, g) accepted after g as g's side operands (group() keeps their
 * kernels to themselves). */
static void side_mark(const Ctx *c, int32_t v, int32_t g) {
  if (v < g || !c->computed[v] || c->side[v] >= 0) return;
  c->side[v] = g;
  for (int k = 0; k < c->f->insts[v].nargs; k++) side_mark(c, c->f->insts[v].args[k], g);
}

/* A per-channel operand of conv2d g's batchnorm, not depending on g: f32 [O] (rank 1:
 * mean, rstd) or [O,1,1] (rank 3: gamma, beta). */
static bool bn_operand(const Ctx *c, int32_t v, int32_t g, int rank) {
  const TensorType *t = ir_vtype(c->f, v), *gt = ir_vtype(c->f, g);
  if (t->rank != rank || t->dtype != DT_F32 || t->dims[0] != gt->dims[1]) return false;
  for (int k = 1; k < rank; k++)
    if (t->dims[k] != 1) return false;
  /* a constant gamma or beta is splatted by the ew kernel: it has no buffer */
  if (rank == 3 && c->f->insts[v].op == OP_CONST) return false;
  return side_ok(c, v, g, 0);
}

/* conv2d g's inference-mode batchnorm after v (g or its biased value), read by it alone:
 *   n = bn_norm(v, mean, rstd)  [s = mul(n, gamma)  [t = add(s, beta)]]
 * each later step taken when the previous value is read by it alone. Members in m[],
 * n returned; *last the last of them. */
static int bn_chain(const Ctx *c, int32_t g, int32_t v, int32_t *m, int32_t *last) {
  Func *f = c->f;
  TypeId ty = f->insts[g].type;
  int32_t b = single_user(c, v);
  if (b < 0 || !free_member(c, b)) return 0;
  const Inst *bi = &f->insts[b];
  if (bi->op != OP_BN_NORM || bi->type != ty || bi->args[0] != v || !bn_operand(c, bi->args[1], g, 1) ||
      !bn_operand(c, bi->args[2], g, 1))
    return 0;
  int n = 0;
  m[n++] = b;
  side_mark(c, bi->args[1], g);
  side_mark(c, bi->args[2], g);
  *last = b;
  for (Op op = OP_MUL; op == OP_MUL || op == OP_ADD; op = op == OP_MUL ? OP_ADD : OP__COUNT) {
    int32_t u = single_user(c, *last);
    if (u < 0 || !free_member(c, u) || f->insts[u].op != op || f->insts[u].type != ty) break;
    int32_t w = f->insts[u].args[0] == *last ? f->insts[u].args[1] : f->insts[u].args[0];
    if (w == *last || !bn_operand(c, w, g, 3)) break;
    side_mark(c, w, g);
    m[n++] = *last = u;
  }
  return n;
}

/* The activation of v (the last affine member of g's chain), among v's readers; -1 if none. */
static int32_t act_of(const Ctx *c, int32_t v, TypeId ty) {
  for (int32_t r = c->roff[v]; r < c->roff[v + 1]; r++) {
    int32_t a = c->readers[r];
    const Inst *ai = &c->f->insts[a];
    if (is_act(ai->op) && ai->nargs == 1 && ai->args[0] == v && ai->type == ty && free_member(c, a)) return a;
  }
  return -1;
}

/* The gemm epilogue chain of the product g: members after g in m[], n returned.
 *   add(g, bias) [act]   g read by the add alone (C then holds the biased value)
 *   act(g)               g may have other readers: C keeps g, the activation goes to
 *                        its own buffer (codegen's STORE_PRE)
 *   mask(aux, g)         g read by the mask alone
 * and for conv2d, between the bias and the activation, bn_chain's batchnorm. */
static int epilogue_chain(const Ctx *c, int32_t g, int32_t *m) {
  Func *f = c->f;
  const Inst *gi = &f->insts[g];
  TypeId ty = gi->type;
  const TensorType *t = ir_vtype(f, g);
  bool conv = gi->op == OP_CONV2D;
  if ((conv ? t->rank != 4 : t->rank < 2) || t->dtype != DT_F32) return 0;
  int cl = t->rank - 1;   /* a product's columns: its bias is [N] (any leading dims) */
  int n = 0;
  int32_t u = single_user(c, g);
  if (u >= 0 && free_member(c, u) && f->insts[u].type == ty) {
    const Inst *ui = &f->insts[u];
    if (ui->op == OP_ADD) {
      int32_t bias = ui->args[0] == g ? ui->args[1] : ui->args[0];
      const TensorType *bt = ir_vtype(f, bias);
      /* a product's bias is [N]; a convolution's [O,1,1] (a bias per channel), usually
       * reshape(b) emitted after the conv: a reshape of what no kernel computes cannot
       * depend on the group either */
      bool before = bias < g || (conv && f->insts[bias].op == OP_RESHAPE && !c->computed[f->insts[bias].args[0]]);
      bool shape = conv ? bt->rank == 3 && bt->dims[0] == t->dims[1] && bt->dims[1] == 1 && bt->dims[2] == 1
                        : bt->rank == 1 && bt->dims[0] == t->dims[cl];
      if (bias != g && before && shape && bt->dtype == DT_F32 &&
          t->dims[conv ? 1 : cl] != DIM_BATCH && f->insts[bias].op != OP_CONST) {  /* a constant: the ew kernel splats it */
        m[n++] = u;
        int32_t last = u;
        if (conv) n += bn_chain(c, g, u, m + n, &last);
        int32_t a = act_of(c, last, ty);   /* an activation of the biased (normalized) value */
        if (a >= 0) m[n++] = a;
        return n;
      }
    }
    if (!conv && is_mask(ui->op) && ui->args[1] == g && ui->args[0] != g && ui->args[0] < g &&
        f->insts[ui->args[0]].op != OP_CONST) {
      m[n++] = u;
      return n;
    }
    /* mask(cast(x16), g): the saved value kept in 16 bits, cast back to f32 for the
     * mask alone (after g, as the precision pass places it): the epilogue reads x16 */
    int32_t x = ui->args[0];
    const Inst *xi = &f->insts[x];
    if (!conv && is_mask(ui->op) && ui->args[1] == g && x > g && xi->op == OP_CAST && xi->args[0] < g &&
        ir_dtype_is_low(ir_vtype(f, xi->args[0])->dtype) && single_user(c, x) == u && free_member(c, x)) {
      m[n++] = x;
      m[n++] = u;
      return n;
    }
  }
  int32_t last = g;
  if (conv && t->dims[1] != DIM_BATCH) n = bn_chain(c, g, g, m, &last);
  int32_t a = act_of(c, last, ty);   /* an activation of the product itself (or its batchnorm) */
  if (a >= 0) m[n++] = a;
  return n;
}

/* The product g's epilogue chain, then the cast of its final value to 16 bits when
 * that value has the cast as its one reader (16-bit store above). */
static int gemm_chain(const Ctx *c, int32_t g, int32_t *m) {
  int n = epilogue_chain(c, g, m);
  if (!is_gemm(c->f->insts[g].op)) return n;
  int32_t last = n ? m[n - 1] : g;
  int32_t h = single_user(c, last);
  if (h < 0 || !free_member(c, h)) return n;
  const Inst *hi = &c->f->insts[h];
  if (hi->op != OP_CAST || hi->args[0] != last || !ir_dtype_is_low(ir_vtype(c->f, h)->dtype)) return n;
  m[n++] = h;
  return n;
}

/* The relu mask after a max-pool's backward (pool mask above): g in m[], or 0. */
static int pool_mask_chain(const Ctx *c, int32_t h, int32_t *m) {
  Func *f = c->f;
  const Inst *hi = &f->insts[h];
  int32_t g = single_user(c, h);
  if (g < 0 || !free_member(c, g)) return 0;
  const Inst *gi = &f->insts[g];
  if (gi->op != OP_RELU_GRAD || gi->args[1] != h || gi->args[0] == h || gi->type != hi->type) return 0;
  const Inst *xi = &f->insts[hi->args[0]];
  if (xi->op != OP_RELU || xi->args[0] != gi->args[0]) return 0;
  m[0] = g;
  return 1;
}

/* The extras of a multi-result op p that this entry computes, in m[] (attention's lse,
 * attention_bwd's dk and dv): p's kernel writes them. */
static int attn_extras(const Ctx *c, int32_t p, int32_t *m) {
  int n = 0;
  for (int32_t r = c->roff[p]; r < c->roff[p + 1]; r++) {
    int32_t e = c->readers[r];
    if (c->f->insts[e].op == OP_EXTRA && c->computed[e] && c->group_of[e] < 0 && n < 2)
      m[n++] = e;
  }
  return n;
}

/* A transpose and the reshape next to it, one copy instead of two: transpose(reshape(x))
 * reads x's buffer with the reshape's dims, reshape(transpose(x)) is written by the
 * transpose straight into the reshape's buffer (a reshape never moves an element:
 * row-major order is its definition). The heads of an attention layer are split and
 * merged so, [B,T,D] -> [B,T,H,dh] -> [B,H,T,dh] and back. The first of the pair has the
 * second as its only reader; the pair's other value keeps its buffer. */
static int view_chain(const Ctx *c, int32_t i, int32_t *m) {
  Func *f = c->f;
  const Inst *in = &f->insts[i];
  int32_t u = single_user(c, i);
  if (u < 0 || !free_member(c, u)) return 0;
  const Inst *ui = &f->insts[u];
  bool pair = (in->op == OP_RESHAPE && ui->op == OP_TRANSPOSE) || (in->op == OP_TRANSPOSE && ui->op == OP_RESHAPE);
  if (!pair || f->insts[in->args[0]].op == OP_CONST || ir_vtype(f, i)->dtype != ir_vtype(f, u)->dtype) return 0;
  m[0] = u;
  return 1;
}

/* k is a scalar computed from constants, sizes and the loss scale only (1/B of a
 * mean, times the scale), so the group that reads it can never be its own dependency. */
static bool scale_ok(Func *f, int32_t k, int depth) {
  const Inst *in = &f->insts[k];
  if (in->op == OP_CONST || in->op == OP_SIZE || in->op == OP_LOSS_SCALE) return true;
  if (depth > 8 || !is_ew(in)) return false;
  for (int q = 0; q < in->nargs; q++)
    if (!scale_ok(f, in->args[q], depth + 1)) return false;
  return true;
}

/* The softmax-CE group of l = softmax_xent(z, y): members after l in m[]. */
static int xent_chain(const Ctx *c, int32_t l, int32_t *m) {
  Func *f = c->f;
  const Inst *li = &f->insts[l];
  int32_t z = li->args[0], y = li->args[1];
  const TensorType *zt = ir_vtype(f, z);
  if (zt->rank < 2 || zt->dtype != DT_F32) return 0;   /* [..., C]: labels of any rank */
  int32_t p = -1, o = -1, s = -1, g = -1;
  for (int32_t r = c->roff[y]; r < c->roff[y + 1] && o < 0; r++) {   /* the first onehot(y) after l */
    int32_t i = c->readers[r];
    const Inst *in = &f->insts[i];
    if (i > l && in->op == OP_ONEHOT && in->args[0] == y && free_member(c, i)) o = i;
  }
  if (o < 0) return 0;
  int32_t su = single_user(c, o);
  if (su < 0 || !free_member(c, su)) return 0;
  const Inst *si = &f->insts[su];
  if (si->op != OP_SUB || si->args[1] != o || si->type != f->insts[z].type) return 0;
  s = su;
  int32_t pv = si->args[0];
  const Inst *pi = &f->insts[pv];
  /* softmax over the last axis of the same logits */
  if (pi->op != OP_SOFTMAX || pi->args[0] != z || pi->iattr[0] != zt->rank - 1) return 0;
  if (pv > l && free_member(c, pv)) p = pv;
  int32_t gu = single_user(c, s);
  if (gu < 0 || !free_member(c, gu)) return 0;
  const Inst *gi = &f->insts[gu];
  if (gi->op != OP_MUL || gi->type != si->type) return 0;
  int32_t k = gi->args[0] == s ? gi->args[1] : gi->args[0];
  if (k == s || ir_vtype(f, k)->rank != 0 || !scale_ok(f, k, 0)) return 0;
  g = gu;
  int n = 0;
  if (p >= 0) m[n++] = p;
  m[n++] = o;
  m[n++] = s;
  m[n++] = g;
  return n;
}

/* The dependency edges between groups: (h, g) for every operand of a member of g that
 * a member of another group h produces (size reads only a shape: no edge). With NULL
 * arrays it only counts. */
static void add_edge(int32_t h, int g, int32_t *ne, int32_t *esrc, int32_t *edst, int32_t *indeg) {
  if (h < 0 || h == g) return;
  if (esrc) {
    esrc[*ne] = h;
    edst[*ne] = g;
    indeg[g]++;
  }
  (*ne)++;
}

static int32_t group_edges(const Ctx *c, Func *f, const int32_t *mem, const int32_t *gstart, int ng, int32_t *esrc,
                           int32_t *edst, int32_t *indeg) {
  int32_t ne = 0;
  for (int g = 0; g < ng; g++)
    for (int32_t k = gstart[g]; k < gstart[g + 1]; k++) {
      const Inst *in = &f->insts[mem[k]];
      if (in->op == OP_SIZE) continue;
      for (int q = 0; q < in->nargs; q++) add_edge(c->group_of[in->args[q]], g, &ne, esrc, edst, indeg);
      /* an assign overwrites its buffer: after every kernel that reads the buffer */
      if (in->op == OP_ASSIGN)
        for (int32_t r = c->roff[in->args[0]]; r < c->roff[in->args[0] + 1]; r++)
          add_edge(c->group_of[c->readers[r]], g, &ne, esrc, edst, indeg);
    }
  return ne;
}

/* Types a and b have one shape (their dtypes may differ: a cast's operand and result). */
static bool same_shape(Func *f, TypeId a, TypeId b) {
  if (a == b) return true;
  const TensorType *ta = ir_type_get(f->mod, a), *tb = ir_type_get(f->mod, b);
  return ta->rank == tb->rank && memcmp(ta->dims, tb->dims, (size_t)ta->rank * sizeof ta->dims[0]) == 0;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return x < y ? -1 : x > y;
}

/* Steps 3 and 4: the kernels and their order. */
static void group(Arena *a, KernelPlan *s, const bool *loss_only, bool fuse) {
  Func *f = s->f;
  const bool *computed = s->computed;
  int32_t n = f->ninsts;
  Ctx c = {f, computed, loss_only, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL};
  c.nuses = arena_alloc(a, (size_t)(n + 1) * sizeof *c.nuses);
  c.user = arena_alloc(a, (size_t)(n + 1) * sizeof *c.user);
  c.sink_use = arena_alloc(a, (size_t)(n + 1) * sizeof *c.sink_use);
  c.group_of = arena_alloc(a, (size_t)(n + 1) * sizeof *c.group_of);
  s->internal = arena_alloc(a, (size_t)(n + 1) * sizeof *s->internal);
  c.side = arena_alloc(a, (size_t)(n + 1) * sizeof *c.side);
  for (int32_t i = 0; i < n; i++) c.group_of[i] = c.side[i] = -1;
  for (int32_t i = 0; i < n; i++) {   /* readers: computed instructions and every sink */
    const Inst *in = &f->insts[i];
    bool sink = ir_ops[in->op].flags & OPF_SINK;
    if ((!computed[i] && !sink) || in->op == OP_SIZE) continue;
    for (int k = 0; k < in->nargs; k++) {
      int32_t v = in->args[k];
      if (sink) c.sink_use[v] = true;
      c.nuses[v]++;
      c.user[v] = i;
    }
  }
  /* Every reader of each value (all instructions), ascending: the fusion rules look
   * for a reader of a given kind, where a scan of the rest of the function per product
   * was quadratic (20,000 dense layers: 10 s). */
  c.roff = arena_alloc(a, (size_t)(n + 2) * sizeof *c.roff);
  int64_t nreads = 0;
  for (int32_t i = 0; i < n; i++) nreads += f->insts[i].nargs;
  c.readers = arena_alloc(a, (size_t)(nreads + 1) * sizeof *c.readers);
  for (int32_t i = 0; i < n; i++)
    for (int k = 0; k < f->insts[i].nargs; k++) c.roff[f->insts[i].args[k] + 1]++;
  for (int32_t v = 0; v < n; v++) c.roff[v + 1] += c.roff[v];
  int32_t *rfill = arena_alloc(a, (size_t)(n + 1) * sizeof *rfill);
  memcpy(rfill, c.roff, (size_t)n * sizeof *rfill);
  for (int32_t i = 0; i < n; i++)
    for (int k = 0; k < f->insts[i].nargs; k++) c.readers[rfill[f->insts[i].args[k]]++] = i;
  /* groups, each a list of members (ascending), formed in instruction order */
  int32_t *mem = arena_alloc(a, (size_t)(n + 1) * sizeof *mem);     /* members, group after group */
  int32_t *gstart = arena_alloc(a, (size_t)(n + 2) * sizeof *gstart);
  uint8_t *gkind = arena_alloc(a, (size_t)(n + 1));
  int ng = 0, nm = 0, prev_group = -1;
  int32_t chain[8];
  for (int32_t i = 0; i < n; i++) {
    if (!computed[i] || c.group_of[i] >= 0) {
      if (computed[i]) prev_group = c.group_of[i];
      continue;
    }
    const Inst *in = &f->insts[i];
    int nc = 0;
    KernelKind kind = KERNEL_SINGLE;
    c.head = i;
    if (fuse && (is_gemm(in->op) || in->op == OP_CONV2D)) {
      nc = gemm_chain(&c, i, chain);
      if (nc) kind = KERNEL_GEMM;
    } else if (fuse && in->op == OP_SOFTMAX_XENT) {
      nc = xent_chain(&c, i, chain);
      if (nc) kind = KERNEL_XENT;
    } else if (fuse && in->op == OP_MAX_POOL2D_BWD) {
      nc = pool_mask_chain(&c, i, chain);
      if (nc) kind = KERNEL_POOL_MASK;
    } else if (fuse && (in->op == OP_RESHAPE || in->op == OP_TRANSPOSE)) {
      nc = view_chain(&c, i, chain);
      if (nc) kind = KERNEL_VIEW;
    } else if (ir_ops[in->op].kind == OPK_ATTN) {   /* with or without fusion */
      nc = attn_extras(&c, i, chain);
      kind = KERNEL_ATTN;
    }
    if (kind == KERNEL_SINGLE && fuse && is_ew(in) && prev_group >= 0 && prev_group == ng - 1 &&
        gkind[prev_group] <= KERNEL_EW && nm - gstart[prev_group] < KERNEL_MAX_GROUP) {
      const Inst *last = &f->insts[mem[nm - 1]];
      if (is_ew(last) && same_shape(f, last->type, in->type) && c.loss_only[mem[nm - 1]] == c.loss_only[i] &&
          c.side[mem[nm - 1]] == c.side[i]) {
        gkind[prev_group] = KERNEL_EW;
        mem[nm++] = i;
        c.group_of[i] = prev_group;
        continue;
      }
    }
    gstart[ng] = nm;
    gkind[ng] = (uint8_t)kind;
    mem[nm++] = i;
    c.group_of[i] = ng;
    for (int k = 0; k < nc; k++) {
      mem[nm++] = chain[k];
      c.group_of[chain[k]] = ng;
    }
    qsort(&mem[gstart[ng]], (size_t)(nm - gstart[ng]), sizeof *mem, cmp_i32);
    prev_group = ng;
    ng++;
  }
  gstart[ng] = nm;
  /* internal members of fused groups: every reader is in the same group (readers
   * counted as nuses counts them; a sink reader is never in a group). The loss rows of
   * softmax-CE always get a buffer: the kernel writes them. */
  int32_t *inside = arena_alloc(a, (size_t)(n + 1) * sizeof *inside);
  /* a pool mask's relu_grad never loads its mask operand p (the pooling's max decides):
   * that read keeps no buffer for p, so a conv's epilogue stops storing the value before
   * its relu when backward read it for nothing else */
  for (int g = 0; g < ng; g++)
    if (gkind[g] == KERNEL_POOL_MASK)
      for (int32_t k = gstart[g]; k < gstart[g + 1]; k++)
        if (f->insts[mem[k]].op == OP_RELU_GRAD) c.nuses[f->insts[mem[k]].args[0]]--;
  for (int g = 0; g < ng; g++) {
    /* an attention kernel writes all its results (an extra's read of its producer is no
     * data read): none internal */
    if (gkind[g] < KERNEL_EW || gkind[g] == KERNEL_ATTN) continue;
    for (int32_t k = gstart[g]; k < gstart[g + 1]; k++) {
      const Inst *ui = &f->insts[mem[k]];
      if (ui->op == OP_SIZE) continue;
      for (int q = 0; q < ui->nargs; q++)
        if (c.group_of[ui->args[q]] == g) inside[ui->args[q]]++;
    }
    for (int32_t k = gstart[g]; k < gstart[g + 1]; k++) {
      int32_t v = mem[k];
      /* in an ew chain every member stores its result, but an f32 value that only a
       * cast to 16 bits reads, or a 16-bit value's f32 copy (a cast back), read in the
       * chain alone, lives in registers only */
      int32_t u = single_user(&c, v);
      bool to16 = u >= 0 && f->insts[u].op == OP_CAST && ir_dtype_is_low(ir_vtype(f, u)->dtype);
      bool from16 = f->insts[v].op == OP_CAST && !ir_dtype_is_low(ir_vtype(f, v)->dtype);
      if (gkind[g] == KERNEL_EW && !to16 && !from16) continue;
      s->internal[v] = c.nuses[v] > 0 && inside[v] == c.nuses[v] && !c.sink_use[v] && f->insts[v].op != OP_SOFTMAX_XENT;
    }
    /* a product's 16-bit store: the f32 value C holds keeps a buffer (the K blocks
     * accumulate there), unless it is the activation and C holds the pre-activation */
    const Inst *hi = &f->insts[mem[gstart[g + 1] - 1]];
    if (gkind[g] == KERNEL_GEMM && hi->op == OP_CAST) {
      int32_t x = hi->args[0];
      const Inst *xi = &f->insts[x];
      bool store_pre = is_act(xi->op) && c.group_of[xi->args[0]] == g && !s->internal[xi->args[0]];
      if (!store_pre) s->internal[x] = false;
    }
  }
  /* order: Kahn over group dependencies, smallest first member first */
  int32_t *indeg = arena_alloc(a, (size_t)(ng + 1) * sizeof *indeg);
  int32_t *eoff = arena_alloc(a, (size_t)(ng + 2) * sizeof *eoff);
  /* edges h -> g (g reads a value of h); counted, then filled */
  int32_t ne = group_edges(&c, f, mem, gstart, ng, NULL, NULL, NULL);
  int32_t *esrc = arena_alloc(a, (size_t)(ne + 1) * sizeof *esrc);
  int32_t *edst = arena_alloc(a, (size_t)(ne + 1) * sizeof *edst);
  group_edges(&c, f, mem, gstart, ng, esrc, edst, indeg);
  /* adjacency by source (counting sort) */
  for (int32_t e = 0; e < ne; e++) eoff[esrc[e] + 1]++;
  for (int g = 0; g < ng; g++) eoff[g + 1] += eoff[g];
  int32_t *adj = arena_alloc(a, (size_t)(ne + 1) * sizeof *adj);
  int32_t *fill = arena_alloc(a, (size_t)(ng + 1) * sizeof *fill);
  for (int32_t e = 0; e < ne; e++) adj[eoff[esrc[e]] + fill[esrc[e]]++] = edst[e];
  /* ready groups in a binary min-heap keyed by group index (= first member order); a
   * sink runs as soon as what it reads is computed (key below every kernel's) */
  int32_t *heap = arena_alloc(a, (size_t)(ng + 1) * sizeof *heap);
  int32_t *key = arena_alloc(a, (size_t)(ng + 1) * sizeof *key);
  for (int g = 0; g < ng; g++) key[g] = ir_ops[f->insts[mem[gstart[g]]].op].kind == OPK_SINK ? g - ng : g;
  int nh = 0;
#define HEAP_PUSH(x)                                                          \
  do {                                                                        \
    int i_ = nh++;                                                            \
    heap[i_] = (x);                                                           \
    while (i_ > 0 && key[heap[(i_ - 1) / 2]] > key[heap[i_]]) {               \
      int32_t t_ = heap[i_]; heap[i_] = heap[(i_ - 1) / 2]; heap[(i_ - 1) / 2] = t_; \
      i_ = (i_ - 1) / 2;                                                      \
    }                                                                         \
  } while (0)
  for (int g = 0; g < ng; g++)
    if (indeg[g] == 0) HEAP_PUSH(g);
  s->order = arena_alloc(a, (size_t)(nm + 1) * sizeof *s->order);
  s->group_start = arena_alloc(a, (size_t)(ng + 2) * sizeof *s->group_start);
  s->kind = arena_alloc(a, (size_t)(ng + 1));
  int k = 0, done = 0;
  while (nh > 0) {
    int32_t g = heap[0];
    heap[0] = heap[--nh];
    for (int i = 0;;) {
      int l = 2 * i + 1, r = l + 1, m = i;
      if (l < nh && key[heap[l]] < key[heap[m]]) m = l;
      if (r < nh && key[heap[r]] < key[heap[m]]) m = r;
      if (m == i) break;
      int32_t t = heap[i]; heap[i] = heap[m]; heap[m] = t;
      i = m;
    }
    s->group_start[done] = k;
    s->kind[done] = gkind[g];
    done++;
    for (int32_t q = gstart[g]; q < gstart[g + 1]; q++) s->order[k++] = mem[q];
    for (int32_t e = eoff[g]; e < eoff[g + 1]; e++)
      if (--indeg[adj[e]] == 0) HEAP_PUSH(adj[e]);
  }
#undef HEAP_PUSH
  if (done != ng) ir_die("kernel plan: the kernel groups of @%s form a cycle", f->name);
  s->group_start[done] = k;
  s->ngroups = ng;
  s->kernel_of = arena_alloc(a, (size_t)(n + 1) * sizeof *s->kernel_of);
  s->loss_only = arena_alloc(a, (size_t)(ng + 1) * sizeof *s->loss_only);
  for (int32_t i = 0; i < n; i++) s->kernel_of[i] = -1;
  for (int g = 0; g < ng; g++) {
    s->loss_only[g] = c.loss_only[s->order[s->group_start[g]]];
    for (int32_t q = s->group_start[g]; q < s->group_start[g + 1]; q++) s->kernel_of[s->order[q]] = g;
  }
}

const char *const kernel_kind_names[KERNEL__COUNT] = {"single", "ew", "gemm+epilogue", "softmax-xent", "pool+mask",
                                                      "attention", "transpose+reshape"};

/* ------------------------------------------------------------------ the pass */

static int batch_dims(const TensorType *t) {
  int n = 0;
  for (int i = 0; i < t->rank; i++) n += t->dims[i] == DIM_BATCH;
  return n;
}

KernelPlan *pass_kernel_plan(Arena *a, Func *f, PlanMode mode, const KernelPlanOptions *o) {
  int32_t n = f->ninsts;
  size_t nb = (size_t)(n + 1);
  KernelPlan *p = arena_alloc(a, sizeof *p);
  p->f = f;
  p->mode = mode;
  p->live = arena_alloc(a, nb * sizeof *p->live);
  p->computed = arena_alloc(a, nb * sizeof *p->computed);
  p->materialize = arena_alloc(a, nb * sizeof *p->materialize);
  p->direct_grad = arena_alloc(a, nb * sizeof *p->direct_grad);
  bool *for_outputs = arena_alloc(a, nb * sizeof *for_outputs);   /* an output (or, training, any sink) needs it */
  bool *loss_only = arena_alloc(a, nb * sizeof *loss_only);
  /* 1. liveness: reverse sweeps from the sinks of the entry */
  for (int32_t i = n - 1; i >= 0; i--) {
    const Inst *in = &f->insts[i];
    if (ir_ops[in->op].kind == OPK_SINK) {   /* inference: the outputs and the loss */
      p->live[i] = mode == PLAN_TRAINING || in->op == OP_OUTPUT || in->op == OP_LOSS;
      for_outputs[i] = mode == PLAN_TRAINING || in->op == OP_OUTPUT;
    }
    for (int k = 0; k < in->nargs; k++) {
      p->live[in->args[k]] |= p->live[i];
      for_outputs[in->args[k]] |= for_outputs[i];
    }
  }
  for (int32_t i = 0; i < n; i++) loss_only[i] = p->live[i] && !for_outputs[i];
  /* 2. placement, and what no kernel computes */
  bool ok = true;
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if (!p->live[i] || in->type == TYPE_VOID) continue;
    const TensorType *t = ir_vtype(f, i);
    if (batch_dims(t) > 1) {
      diag_error(in->loc, "a value with the batch dim twice (%%%d = %s) cannot be compiled: a step's memory is linear in "
                 "the batch", (int)i, ir_ops[in->op].name);
      ok = false;
    }
    if (t->dtype == DT_LABEL && in->op != OP_INPUT) {
      diag_error(in->loc, "labels are only produced by inputs (%%%d = %s)", (int)i, ir_ops[in->op].name);
      ok = false;
    }
    if (ir_ops[in->op].kind != OPK_EW && !(ir_ops[in->op].flags & (OPF_SINK | OPF_LEAF)))
      for (int k = 0; k < in->nargs; k++)
        if (f->insts[in->args[k]].op == OP_CONST) p->materialize[in->args[k]] = true;
  }
  if (!ok) return NULL;
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    p->computed[i] = p->live[i] && in->op != OP_INPUT && in->op != OP_PARAM && in->op != OP_BUFFER &&
                     (in->op != OP_CONST || p->materialize[i]);
  }
  /* the one gradient of a parameter is computed straight into its gradient slot */
  int32_t *grad_refs = arena_alloc(a, nb * sizeof *grad_refs);
  for (int32_t i = 0; i < n; i++) p->direct_grad[i] = -1;
  for (int32_t i = 0; i < n; i++)
    if (f->insts[i].op == OP_GRAD && p->live[i]) {
      int32_t g = f->insts[i].args[1];
      if (grad_refs[g]++ == 0) p->direct_grad[g] = i;
    }
  for (int32_t i = 0; i < n; i++)
    if (grad_refs[i] != 1 || !p->computed[i] || f->insts[i].op == OP_CONST) p->direct_grad[i] = -1;
  /* 3, 4. kernels and their order */
  group(a, p, loss_only, o ? o->fuse : true);
  /* A gradient computed in place must not be read by a later kernel: under gradient
   * accumulation (frame->accumulate) its kernel writes it to a scratch that the next
   * gradient's kernel reuses, and its slot then holds the sum. Such a value keeps a
   * workspace slot and its grad sink adds or copies it. */
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if (!p->live[i] || in->op == OP_GRAD || p->kernel_of[i] < 0) continue;
    for (int k = 0; k < in->nargs; k++) {
      int32_t v = in->args[k];
      if (p->direct_grad[v] >= 0 && p->kernel_of[v] != p->kernel_of[i]) p->direct_grad[v] = -1;
    }
  }
  return p;
}

/* ------------------------------------------------------------------ checking */

bool kernel_plan_verify(const KernelPlan *p, const char *what) {
  Func *f = p->f;
  int32_t n = f->ninsts;
  int errors = 0;
#define BAD(...)                                                                  \
  do {                                                                            \
    if (errors++ < 20) {                                                          \
      fprintf(stderr, "bpcc: kernel plan of @%s after %s: ", f->name, what);       \
      fprintf(stderr, __VA_ARGS__);                                               \
      fputc('\n', stderr);                                                        \
    }                                                                             \
  } while (0)
  int32_t *seen = bp_xmalloc((size_t)(n + 1) * sizeof *seen);
  for (int32_t i = 0; i < n; i++) seen[i] = -1;
  for (int g = 0; g < p->ngroups; g++) {
    int32_t b = p->group_start[g], e = p->group_start[g + 1];
    if (e <= b) BAD("kernel %d is empty", g);
    if (e - b > KERNEL_MAX_GROUP) BAD("kernel %d has %d members (at most %d)", g, e - b, KERNEL_MAX_GROUP);
    for (int32_t k = b; k < e; k++) {
      int32_t v = p->order[k];
      if (v < 0 || v >= n) { BAD("kernel %d names %%%d, outside the function", g, v); continue; }
      if (k > b && v <= p->order[k - 1]) BAD("the members of kernel %d are not ascending at %%%d", g, v);
      if (!p->computed[v]) BAD("kernel %d computes %%%d, which is not computed", g, v);
      if (seen[v] >= 0) BAD("%%%d is in kernels %d and %d", v, seen[v], g);
      seen[v] = g;
      if (p->kernel_of[v] != g) BAD("kernel_of[%%%d] is %d, not %d", v, p->kernel_of[v], g);
    }
  }
  for (int32_t i = 0; i < n; i++) {
    if (p->computed[i] && seen[i] < 0) BAD("%%%d = %s is computed but in no kernel", i, ir_ops[f->insts[i].op].name);
    if (!p->computed[i] || seen[i] < 0) continue;
    const Inst *in = &f->insts[i];
    if (in->op == OP_SIZE) continue;   /* reads a shape only */
    for (int k = 0; k < in->nargs; k++) {
      int32_t v = in->args[k];
      if (p->computed[v] && (seen[v] < 0 || seen[v] > seen[i]))
        BAD("%%%d (kernel %d) reads %%%d, which kernel %d computes later", i, seen[i], v, seen[v]);
      bool unread = p->kind[seen[i]] == KERNEL_POOL_MASK && in->op == OP_RELU_GRAD && k == 0;   /* not loaded */
      if (p->internal[v] && seen[v] != seen[i] && !unread)
        BAD("%%%d (kernel %d) reads %%%d, internal to kernel %d", i, seen[i], v, seen[v]);
      if (!p->live[v]) BAD("%%%d reads %%%d, which is not live", i, v);
    }
    if (p->internal[i] && p->direct_grad[i] >= 0) BAD("%%%d is internal and a direct gradient", i);
  }
  for (int32_t i = 0; i < n; i++)
    if (f->insts[i].op == OP_OUTPUT || f->insts[i].op == OP_LOSS || f->insts[i].op == OP_GRAD || f->insts[i].op == OP_ASSIGN)
      for (int k = 0; k < f->insts[i].nargs; k++)
        if (p->internal[f->insts[i].args[k]]) BAD("sink %%%d reads %%%d, internal to its kernel", i, f->insts[i].args[k]);
#undef BAD
  bp_free(seen);
  return errors == 0;
}

/* ------------------------------------------------------------------ printing */

int kernel_plan_count(const KernelPlan *p) {
  int k = 0;
  for (int g = 0; g < p->ngroups; g++) k += ir_ops[p->f->insts[p->order[p->group_start[g]]].op].kind != OPK_SINK;
  return k;
}

void kernel_plan_print(FILE *out, const KernelPlan *p) {
  Func *f = p->f;
  int32_t n = f->ninsts;
  /* the printer writes `func @name {`, one line per instruction, then `}` */
  char *text = ir_print_to_string(f);
  const char **line = bp_xmalloc((size_t)(n + 2) * sizeof *line);
  size_t *len = bp_xmalloc((size_t)(n + 2) * sizeof *len);
  char *q = text;
  int32_t nl = 0;
  while (q && *q && nl < n + 2) {
    char *e = strchr(q, '\n');
    line[nl] = q;
    len[nl++] = e ? (size_t)(e - q + 1) : strlen(q);
    q = e ? e + 1 : NULL;
  }
  if (nl < n + 2) ir_die("kernel_plan_print: the printer wrote %d lines for %d instructions", (int)nl, (int)n);
  fwrite(line[0], 1, len[0], out);
  for (int32_t i = 0; i < n; i++)   /* leaves that stay leaves: inputs, parameters, immediates */
    if (!p->computed[i] && p->live[i] && (ir_ops[f->insts[i].op].flags & OPF_LEAF)) fwrite(line[i + 1], 1, len[i + 1], out);
  int k = 0;
  for (int g = 0; g < p->ngroups; g++) {
    int32_t b = p->group_start[g], e = p->group_start[g + 1];
    bool sink = ir_ops[f->insts[p->order[b]].op].kind == OPK_SINK;
    if (!sink) {
      fprintf(out, "  # kernel %d:", k++);
      for (int32_t m = b; m < e; m++) fprintf(out, "%s%s", m == b ? " " : "+", ir_ops[f->insts[p->order[m]].op].name);
      if (p->kind[g] >= KERNEL_GEMM) fprintf(out, "  (%s)", kernel_kind_names[p->kind[g]]);
      if (p->loss_only[g] && p->mode == PLAN_INFERENCE) fprintf(out, "  [when the loss is asked for]");
      fprintf(out, "\n");
    }
    for (int32_t m = b; m < e; m++) {
      int32_t v = p->order[m];
      size_t l = len[v + 1];
      if (p->internal[v] && l > 0 && line[v + 1][l - 1] == '\n') {
        fwrite(line[v + 1], 1, l - 1, out);
        fputs("  (internal)\n", out);
      } else {
        fwrite(line[v + 1], 1, l, out);
      }
    }
  }
  fwrite(line[n + 1], 1, len[n + 1], out);
  fprintf(out, "# %d kernels\n", k);
  bp_free(line);
  bp_free(len);
  bp_free(text);
}
