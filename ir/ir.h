/* ir/ir.h — the tensor SSA IR, and the small utilities every stage shares.
 *
 * This header is the table of contents of ir/:
 *   arena.c    bump arenas and the one allocation hook (bp_malloc)
 *   diag.c     file:line:col diagnostics with the source line and a caret
 *   ir.c       modules, interned types, the builder (type inference, hash-consing)
 *   print.c    the textual form              (ir_print)
 *   parse.c    its hand-written parser       (ir_parse)
 *   verify.c   types, shapes, operand order  (ir_verify)
 *   interp.c   the reference interpreter, f32 and f64 (ir_interp_*)
 *
 * The IR in one paragraph: a Func is a flat array of Inst in topological order; the
 * value of an instruction is its index, and operands always have smaller indices, so a
 * forward analysis is a for loop and reverse-mode AD a reverse loop. Types (dtype +
 * shape, where the first dim may be the symbolic batch B) are interned in the Module,
 * so type equality is an integer compare. Every instruction carries the DSL location it
 * came from (and, inside a user layer, the model-level call that instantiated it);
 * backward instructions also record the forward instruction (`from`) and the rule that
 * produced them. What a function returns is marked by sink instructions:
 * `output "probs" %9`, `loss %12`, `grad %2, %31`.
 *
 *   func @mnist_mlp {
 *     %0 = input "x" : f32[B,784]                                # mnist_mlp.bp:2:17
 *     %2 = param "h.W" he_normal : f32[784,800]                  # mnist_mlp.bp:3:18
 *     %4 = matmul %0, %2 : f32[B,800]                            # mnist_mlp.bp:3:18
 *     ...
 *   }
 */
#ifndef BPCC_IR_H
#define BPCC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------ memory (arena.c) */

/* The one allocation hook. bp_alloc_fail_after(n): the (n+1)-th call from now fails
 * (n = -1 restores normal behaviour), so tests can inject out-of-memory anywhere. */
void *bp_malloc(size_t n);
void bp_free(void *p);
void bp_alloc_fail_after(long n);
void *bp_xmalloc(size_t n);             /* exits with "out of memory" (status 1) */
void *bp_xrealloc(void *p, size_t n);

typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n);  /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------- diagnostics (diag.c) */

/* A source range on one line: 1-based line and col; endcol is one past the last
 * column (0 or <= col: a single caret). file indexes the registered sources; -1 none. */
typedef struct {
  int32_t file, line, col, endcol;
} SrcLoc;

#define SRCLOC_NONE ((SrcLoc){-1, 0, 0, 0})

int diag_add_file(const char *name, const char *text, size_t len); /* copies; returns file id */
const char *diag_file_name(int file);
const char *diag_file_text(int file, size_t *len);
void diag_error(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_warning(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_note(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int diag_error_count(void);
int diag_warning_count(void);
void diag_set_output(FILE *out);        /* NULL: stderr */
void diag_set_error_limit(int n);       /* default 50 */
void diag_reset(void);                  /* forget files and counts (tests) */

/* "Did you mean": offer the known names one by one; the nearest in edit distance
 * (insertions, deletions, substitutions) that is close enough stays in best: 1 edit
 * for names of up to 3 characters, 2 above; ties go to the first offered. The
 * frontend suggests names and functions with it, the driver commands and options. */
typedef struct {
  const char *best;   /* NULL: nothing close */
  int distance;
} DiagSuggest;
#define DIAG_SUGGEST_INIT ((DiagSuggest){NULL, 99})
int diag_edit_distance(const char *a, const char *b);   /* 99 for names over 40 characters */
/* true when candidate became the best so far */
bool diag_suggest(DiagSuggest *s, const char *name, const char *candidate);

/* Internal errors: a bug in bpcc, not in the user's program. Reports the C location. */
_Noreturn void ir_die_at(const char *cfile, int cline, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define ir_die(...) ir_die_at(__FILE__, __LINE__, __VA_ARGS__)

/* ------------------------------------------------------------------ types (ir.c) */

typedef enum {
  DT_F32,
  DT_F64,
  DT_LABEL,   /* label[B, C]: one class index per row (int32 storage, shape [B]); C = classes;
                 label[B, T, C]: one per position (storage [B, T]); tokens are labels */
  /* Storage types of mixed precision (passes/precision.c): 16-bit values that only a
   * `cast` makes and only a `cast` or a matrix product reads. A product of two bf16 (or
   * two f16) operands accumulates in f32 and its result is f32; every other op computes
   * on f32 values. */
  DT_BF16,    /* bfloat16: f32's exponent, 8 significant bits */
  DT_F16,     /* IEEE binary16: 5 exponent bits, 11 significant bits, max 65504 */
} DType;

/* Bytes of one element of dt as stored (labels: 4, one int32 per row or position). */
int ir_dtype_bytes(DType dt);
static inline bool ir_dtype_is_low(int dt) { return dt == DT_BF16 || dt == DT_F16; }
/* x rounded to dt: to float for f32; for bf16 and f16 to float first (the value a kernel
 * holds), then to nearest even, NaN kept, f16 overflowing to inf and underflowing
 * through its subnormals to 0; f64 and labels unchanged. */
double ir_round_to(DType dt, double x);

#define IR_MAX_RANK 4
#define DIM_BATCH (-1)        /* the symbolic batch dim B, bound at run time */
#define IR_AXIS_ALL (-1)      /* reductions: over every axis */

typedef struct {
  uint8_t dtype;              /* DType */
  uint8_t rank;               /* 0 = scalar */
  int64_t dims[IR_MAX_RANK];  /* dims[i] > 0, or DIM_BATCH (in any position after a transpose) */
} TensorType;

typedef int32_t TypeId;       /* index into Module.types; equal ids <=> equal types */
#define TYPE_VOID (-1)        /* the type of sinks */

/* ------------------------------------------------------------------ ops (ops.def) */

enum {
  OPF_LEAF = 1 << 0,
  OPF_EW = 1 << 1,
  OPF_COMM = 1 << 2,
  OPF_PURE = 1 << 3,
  OPF_REDUCE = 1 << 4,
  OPF_SINK = 1 << 5,
  OPF_ACT = 1 << 6,
  OPF_ACT_GRAD = 1 << 7,
  OPF_KINK = 1 << 8,
};

/* The class of loop nest that computes an op (ops.def explains each). */
typedef enum {
  OPK_LEAF, OPK_EW, OPK_PRODUCT, OPK_REDUCE, OPK_ROW, OPK_SHAPE, OPK_LABEL, OPK_RANDOM, OPK_SINK,
  OPK_CONV,     /* a 2-D convolution or one of its two gradients */
  OPK_ATTN,     /* fused attention or its backward */
  OPK__COUNT
} OpKind;

typedef enum {
#define OP(e, name, nargs, kind, flags) OP_##e,
#include "ir/ops.def"
#undef OP
  OP__COUNT
} Op;

typedef struct {
  const char *name;
  int nargs;
  OpKind kind;
  unsigned flags;
} OpInfo;

extern const OpInfo ir_ops[OP__COUNT];
int ir_op_lookup(const char *name, size_t len);  /* -1 if unknown */

/* Parameter initializers (PARAM: iattr[0]; arguments in fattr[0..1]). */
typedef enum {
  INIT_ZEROS,
  INIT_ONES,
  INIT_CONSTANT,        /* fattr0 = v */
  INIT_NORMAL,          /* fattr0 = std (mean 0) */
  INIT_UNIFORM,         /* fattr0 = a, fattr1 = b */
  INIT_XAVIER_UNIFORM,  /* fan_in = dims[0] (rows of W[in,out]) or 1 for vectors */
  INIT_XAVIER_NORMAL,
  INIT_HE_UNIFORM,
  INIT_HE_NORMAL,
  INIT__COUNT
} InitKind;

extern const char *const ir_init_names[INIT__COUNT];
int ir_init_lookup(const char *name);            /* -1 if unknown */

/* --------------------------------------------------------------- instructions */

#define IR_MAX_ARGS 6   /* attention_bwd takes six */
#define IR_NIATTR 4       /* integer attributes per instruction (conv2d uses 3) */

enum {
  IF_BACKWARD = 1 << 0,   /* produced by autodiff */
  IF_RECOMPUTED = 1 << 1, /* forward value recomputed in backward (passes/recompute.c) */
};

typedef struct {
  uint16_t op;            /* Op */
  uint8_t nargs;
  uint8_t flags;          /* IF_* */
  TypeId type;            /* TYPE_VOID for sinks */
  int32_t args[IR_MAX_ARGS];
  int64_t iattr[IR_NIATTR];
  double fattr[2];
  const char *name;       /* interned in the module arena; NULL if none */
  SrcLoc loc;             /* the DSL text it came from */
  SrcLoc call;            /* the model-level call that instantiated the layer it came from;
                             SRCLOC_NONE in the model's own statements (ir_has_call) */
  int32_t from;           /* backward: the forward instruction it differentiates; else -1 */
  const char *rule;       /* the gradient or rewrite rule that produced it, or NULL */
} Inst;

/* Pooling attributes (max_pool2d, avg_pool2d and their _bwd ops): iattr0 = kernel,
 * iattr1 = stride, iattr2 = padding. */
static inline void ir_pool_geom(const Inst *in, int64_t *k, int64_t *s, int64_t *p) {
  *k = in->iattr[0];
  *s = in->iattr[1];
  *p = in->iattr[2];
}
static inline void ir_pool_set(Inst *in, int64_t k, int64_t s, int64_t p) {
  in->iattr[0] = k;
  in->iattr[1] = s;
  in->iattr[2] = p;
}
/* transpose's permutation: perm[i] = the operand dim that becomes result dim i, for an
 * operand of rank `rank` (iattr0 = 0: the last two dims swapped). False if iattr0 is
 * not a permutation of 0..rank-1. */
static inline bool ir_transpose_perm(const Inst *in, int rank, int perm[4]) {
  int64_t code = in->iattr[0];
  if (rank < 2 || rank > 4) return false;
  for (int i = 0; i < rank; i++) perm[i] = i;
  if (code == 0) {
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return true;
  }
  unsigned seen = 0;
  for (int i = rank - 1; i >= 0; i--, code /= 10) {
    int d = (int)(code % 10);
    if (d >= rank || (seen & (1u << d))) return false;
    perm[i] = d;
    seen |= 1u << d;
  }
  return code == 0;
}
/* The code of a permutation: 0 when it swaps the last two dims, else its digits. */
static inline int64_t ir_transpose_code(int rank, const int perm[4]) {
  bool swap = true;
  int64_t code = 0;
  for (int i = 0; i < rank; i++) {
    int want = i == rank - 2 ? rank - 1 : i == rank - 1 ? rank - 2 : i;
    if (perm[i] != want) swap = false;
    code = code * 10 + perm[i];
  }
  return swap ? 0 : code;
}

/* Output size of a pooling window over n cells: floor((n + 2p - k) / s) + 1. */
static inline int64_t ir_pool_out(int64_t n, int64_t k, int64_t s, int64_t p) { return (n + 2 * p - k) / s + 1; }

typedef struct Module Module;

typedef struct Func {
  Module *mod;
  const char *name;
  Inst *insts;            /* topological order: args[k] < own index */
  int32_t ninsts, cap;
  /* Hash-consing of pure instructions (CSE at build time); on unless cse == false. */
  int32_t *hash;          /* open addressing, -1 empty */
  int32_t hashcap;
  bool cse;
} Func;

struct Module {
  Arena *arena;
  TensorType *types;
  int32_t ntypes, captypes;
  Func **funcs;
  int32_t nfuncs, capfuncs;
};

/* ------------------------------------------------------------- building (ir.c) */

Module *ir_module_new(void);
void ir_module_free(Module *m);
const char *ir_intern(Module *m, const char *s);     /* copy into the module arena */

TypeId ir_type(Module *m, DType dt, int rank, const int64_t *dims);
TypeId ir_type_scalar(Module *m, DType dt);
static inline const TensorType *ir_type_get(const Module *m, TypeId t) { return &m->types[t]; }
int64_t ir_type_numel(const TensorType *t, int64_t batch); /* elements, with B = batch */
/* "f32[B,784]", "label[B,10]", "f32[]" into buf (returns buf). */
char *ir_type_str(const TensorType *t, char *buf, size_t n);
const char *ir_dtype_name(DType dt);

Func *ir_func_new(Module *m, const char *name);
Func *ir_func_find(Module *m, const char *name);
Func *ir_func_clone(Func *f, const char *name);       /* same instructions, new name */

/* The output size of a convolution along one axis: floor((n + 2 pad - dil (k - 1) - 1)
 * / stride) + 1, or 0 when the dilated kernel does not fit the padded input (or an
 * argument is out of range). conv2d's type rule and the frontend share it. */
int64_t ir_conv_out(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t dil);

/* Infer the result type of `in` (op, args, attributes) in f. Returns the TypeId, or
 * TYPE_VOID with a message in err (for the verifier and the parser) when it is
 * ill-typed. Sinks give TYPE_VOID with err[0] == 0. Leaves (input, param, const,
 * dropout_mask) and BROADCAST / SUM_TO / RESHAPE / CONV2D_BWD_* / AVG_POOL2D_BWD keep in->type, checking only
 * that it is legal. */
TypeId ir_infer_type(Func *f, const Inst *in, char *err, size_t errlen);

/* Append an instruction; its type is inferred (in->type is used only for leaves,
 * BROADCAST, SUM_TO, RESHAPE and the two conv2d gradients). Pure instructions are hash-consed: an identical earlier one
 * is returned instead (same op, args, attributes, type). Ill-typed input is an internal
 * error: the frontend checks shapes before it builds. Returns the value id. */
int32_t ir_emit(Func *f, const Inst *in);

/* Convenience constructors; loc is the DSL location. */
Inst ir_inst(Op op, SrcLoc loc);  /* zeroed, from = -1, type = TYPE_VOID, call = SRCLOC_NONE */
int32_t ir_input(Func *f, const char *name, int index, TypeId t, SrcLoc loc);
int32_t ir_param(Func *f, const char *name, TypeId t, InitKind init, double a, double b, SrcLoc loc);
/* A buffer: non-trainable model state with a path name (batchnorm's running statistics),
 * initialized by init (INIT_ZEROS, INIT_ONES or INIT_CONSTANT with value). */
int32_t ir_buffer(Func *f, const char *name, TypeId t, InitKind init, double value, SrcLoc loc);
int32_t ir_const(Func *f, double v, TypeId t, SrcLoc loc);
int32_t ir_scalar(Func *f, double v, SrcLoc loc);     /* f32[] constant */
int32_t ir_unary(Func *f, Op op, int32_t a, SrcLoc loc);
/* x rounded to dtype dt (a mixed-precision storage type, or back to f32). */
int32_t ir_cast(Func *f, int32_t x, DType dt, SrcLoc loc);
int32_t ir_binary(Func *f, Op op, int32_t a, int32_t b, SrcLoc loc);
int32_t ir_pow(Func *f, int32_t a, double exponent, SrcLoc loc);
int32_t ir_reduce(Func *f, Op op, int32_t a, int axis, bool keep, SrcLoc loc);
int32_t ir_size(Func *f, int32_t a, int axis, SrcLoc loc);
int32_t ir_rowop(Func *f, Op op, int32_t a, int axis, SrcLoc loc); /* softmax, log_softmax */
int32_t ir_to_type(Func *f, Op op, int32_t a, TypeId t, SrcLoc loc); /* BROADCAST, SUM_TO, RESHAPE */
/* conv2d(a = x, b = w), conv2d_bwd_data(a = dy, b = w) or conv2d_bwd_weight(a = x, b = dy)
 * with one stride, padding and dilation for both axes; t: the gradients' result type
 * (the image's or the weights'), ignored for conv2d. */
int32_t ir_conv2d(Func *f, Op op, int32_t a, int32_t b, int64_t stride, int64_t pad, int64_t dil, TypeId t,
                  SrcLoc loc);
int32_t ir_dropout_mask(Func *f, double p, int stream, TypeId t, SrcLoc loc);
/* transpose by perm (rank entries; NULL: swap the last two dims) */
int32_t ir_transpose(Func *f, int32_t a, const int *perm, SrcLoc loc);
/* matmul_tn with the batch dims folded into the sum: a[...,k,m], b[...,k,n] -> [m,n] */
int32_t ir_matmul_tn_fold(Func *f, int32_t a, int32_t b, SrcLoc loc);
int32_t ir_causal_mask(Func *f, int64_t t, DType dt, SrcLoc loc);
int32_t ir_loss_scale(Func *f, DType dt, SrcLoc loc);   /* dt[]: the step's loss scale (the backward's seed) */
/* attention(q, k, v) with its extra lse right after it: returns o, *lse (may be NULL) */
int32_t ir_attention(Func *f, int32_t q, int32_t k, int32_t v, bool causal, double scale, int32_t *lse, SrcLoc loc);
/* attention_bwd and its two extras: dq, *dk, *dv */
int32_t ir_attention_bwd(Func *f, const int32_t args[6], bool causal, double scale, int32_t *dk, int32_t *dv,
                         SrcLoc loc);
/* The extra result `index` of the multi-result op p. */
int32_t ir_extra(Func *f, int32_t p, int index, SrcLoc loc);
/* layernorm(a = x, b = gamma, c = beta), layernorm_bwd(x, gamma, dy) or
 * layernorm_bwd_gamma(x, dy) (c unused) over the `dims` trailing dims of x, eps > 0. */
int32_t ir_layernorm(Func *f, Op op, int32_t a, int32_t b, int32_t c, int64_t dims, double eps, SrcLoc loc);
int32_t ir_pool(Func *f, Op op, int32_t x, int64_t kernel, int64_t stride, int64_t padding, SrcLoc loc); /* MAX_POOL2D, AVG_POOL2D */
void ir_output(Func *f, const char *name, int32_t v, SrcLoc loc);
void ir_loss(Func *f, int32_t v, SrcLoc loc);
void ir_grad(Func *f, int32_t param, int32_t g, SrcLoc loc);
void ir_assign(Func *f, int32_t buffer, int32_t v, SrcLoc loc);   /* the buffer's value after a training step */
/* bn_mean(a), bn_var(a, b), bn_norm(a, b, c), bn_norm_bwd(a, b, c): unused operands ignored */
int32_t ir_bn(Func *f, Op op, int32_t a, int32_t b, int32_t c, SrcLoc loc);

static inline Inst *ir_at(Func *f, int32_t v) { return &f->insts[v]; }
/* Does in carry a call site worth showing: one that is set and is not its loc (file,
 * line and column, what the text form prints)? */
static inline bool ir_has_call(const Inst *in) {
  return in->call.file >= 0 && in->call.line > 0 &&
         (in->call.file != in->loc.file || in->call.line != in->loc.line || in->call.col != in->loc.col);
}
static inline const TensorType *ir_vtype(Func *f, int32_t v) {
  return ir_type_get(f->mod, f->insts[v].type);
}

/* Use counts of every value in one sweep (QBE's filluse): uses[v] = number of operand
 * slots that name v. The caller frees with bp_free. */
int32_t *ir_use_counts(Func *f);

/* Broadcast shape of a and b (NumPy rules over trailing dims). False if incompatible. */
bool ir_broadcast_shape(const TensorType *a, const TensorType *b, TensorType *out);

/* --------------------------------------------------- text form (print.c, parse.c) */

/* One instruction per line:
 *   %4 = matmul %0, %2 : f32[B,800]   # mnist_mlp.bp:3:18
 * backward lines add the rule and the forward instruction:
 *   %31 = matmul_tn %0, %29 : f32[784,800]   # mnist_mlp.bp:3:18  [matmul.db from %4]
 * a line from a user layer adds the model-level call when it differs from the location:
 *   %7 = matmul %0, %2 : f32[B,8]   # net.bp:3:12 (called at net.bp:8:9)
 * Attributes print as `axis=1 keep=1`, `p=0.5`, `value=0.5`, init names and args. */
void ir_print_func(FILE *out, Func *f);
void ir_print_module(FILE *out, Module *m);
char *ir_print_to_string(Func *f);                    /* bp_malloc'd; caller frees */

/* Parse the text form into a new module. On error: diagnostics through diag_error
 * (name is used as the file name) and NULL. Parsed functions have cse = false so that
 * the instruction numbering is exactly the text's. */
Module *ir_parse(const char *name, const char *text, size_t len);

/* ------------------------------------------------------------ checking (verify.c) */

/* Types, shapes, operand order (args before use), arity, sinks last-use rules.
 * Returns true if valid; otherwise prints each problem (with `what`, e.g. the pass
 * name) to stderr and returns false. */
bool ir_verify(Func *f, const char *what);

/* ---------------------------------------------------- reference interpreter (interp.c) */

/* A tensor value in the interpreter: always stored as double; in f32 mode every op's
 * result is rounded to float, so it computes what an f32 machine would. Labels are
 * stored as class indices (one per row). */
typedef struct {
  TensorType type;        /* with the batch resolved: no DIM_BATCH */
  double *data;           /* numel elements, row-major */
  int64_t numel;
} Tensor;

typedef enum { INTERP_F32, INTERP_F64 } InterpMode;

typedef struct Interp Interp;

/* Run f with batch size `batch`. inputs[i] is the i-th INPUT (by iattr0), params[j] the
 * j-th PARAM in instruction order. step/seed feed dropout masks. Returns the
 * interpreter state holding every value, or NULL with an error printed. */
Interp *ir_interp_run(Func *f, InterpMode mode, int64_t batch,
                      const Tensor *inputs, int ninputs,
                      const Tensor *params, int nparams, uint64_t seed, uint64_t step);
const Tensor *ir_interp_value(Interp *it, int32_t v);  /* NULL for sinks / not computed */
void ir_interp_free(Interp *it);

/* The scalar math of the elementwise ops (attr: pow's exponent); NAN for other ops.
 * The interpreter and constant folding share it. */
double ir_eval_unary(Op op, double x, double attr);
double ir_eval_binary(Op op, double a, double b);

Tensor ir_tensor_new(const TensorType *t);             /* zeroed; batch already resolved */
void ir_tensor_free(Tensor *t);

#endif
