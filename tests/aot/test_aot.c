/* tests/aot/test_aot.c — shared libraries written by cg_aot_write, loaded with dlopen.
 *
 *   - the library and the JIT (cg_model_jit + runtime/model.c) give the same initial
 *     parameters, loss, gradients and trained parameters for the same seed and batch
 *     (bit for bit: the same optimized module, compiled for the same target)
 *   - every ABI misuse returns its code and message
 *   - save / load round trip through the library; corrupt, truncated and another
 *     model's checkpoints are errors
 *   - readelf -d: NEEDED only libc, libm, libpthread; nm -D: only <model>_* exported
 *   - two models' libraries in one process, each with its own runtime; a thread that
 *     used a library may outlive its dlclose
 *   - the two generated headers compile together under -Wall -Wextra -Werror
 *   - a failed link leaves no file behind and the old library in place */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/runtime.h"
#include "tests/compile.h"
#include "tests/runtime/testutil.h"

static const char clf_src[] =
    "model clf(x: f32[B, 5], y: label[B, 3]) {\n"
    "    h = tanh(dense_xavier(x, 19))\n"
    "    output logits = dense(h, 3)\n"
    "    loss softmax_cross_entropy(logits, y)\n"
    "}\n"
    "train clf {\n"
    "    optimizer adam(lr = 0.01)\n"
    "}\n";

/* batchnorm over dense features: two buffers, h.bn1d.running_mean and running_var */
static const char bnm_src[] =
    "model bnm(x: f32[B, 5], y: label[B, 3]) {\n"
    "    h = relu(bn1d(dense(x, 6)))\n"
    "    output logits = dense(h, 3)\n"
    "    loss softmax_cross_entropy(logits, y)\n"
    "}\n"
    "train bnm {\n"
    "    optimizer sgd(lr = 0.1, momentum = 0.9)\n"
    "}\n";

static const char reg_src[] =
    "model reg(x: f32[B, 2], t: f32[B, 1]) {\n"
    "    output y = dense_xavier(x, 1)\n"
    "    loss mse(y, t)\n"
    "}\n";

/* ------------------------------------------------------------ building */

typedef struct {
  Arena *arena;
  Module *mod;
  CgModel *cg;
} Built;

static Built build(const char *name, const char *src, int optimizer, double lr) {
  Built b = {arena_new(), ir_module_new(), NULL};
  FeUnit *u = fe_compile_text(b.arena, name, src, strlen(src));
  assert_non_null(u);
  assert_int_equal(diag_error_count(), 0);
  assert_true(u->nmodels == 1);
  Func *fwd = fe_lower(b.mod, u->models[0]);
  assert_non_null(fwd);
  Func *grad = test_grad(fwd, NULL);
  assert_non_null(grad);
  bprt_optimizer_config opt;
  bprt_optimizer_init(&opt, optimizer);
  opt.hyper[BPRT_H_LR] = lr;
  CgOptions co = {"native", 3, 2, false, false};
  b.cg = test_build(fwd, grad, &opt, &co);
  assert_non_null(b.cg);
  return b;
}

static void built_free(Built *b) {
  cg_model_free(b->cg);
  ir_module_free(b->mod);
  arena_free(b->arena);
}

/* The ABI of one library, looked up by name. */
typedef struct {
  void *h;
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*num_params)(void), (*num_inputs)(void), (*num_outputs)(void);
  int (*param)(const void *, int, bprt_param_info *);
  int (*input_info)(int, bprt_tensor_desc *), (*output_info)(int, bprt_tensor_desc *);
  int (*forward)(void *, int64_t, const void *const *, float *const *);
  int (*loss_and_grad)(void *, int64_t, const void *const *, float *);
  int (*train_step)(void *, int64_t, const void *const *, float *);
  int (*set_lr)(void *, double), (*get_lr)(const void *, double *);
  int (*set_hyper)(void *, const char *, double), (*get_hyper)(const void *, const char *, double *);
  int64_t (*get_step)(const void *);
  int (*save)(const void *, const char *), (*load)(void *, const char *);
  const char *(*last_error)(void);
  int (*set_threads)(int), (*get_threads)(void);
} Lib;

static void *sym(void *h, const char *model, const char *what) {
  char name[256];
  snprintf(name, sizeof name, "%s_%s", model, what);
  void *p = dlsym(h, name);
  if (!p) fail_msg("missing symbol %s", name);
  return p;
}

#define LOOK(f) memcpy(&l.f, (void *[]){sym(l.h, model, #f)}, sizeof(void *))

static Lib open_lib(const char *path, const char *model) {
  Lib l;
  memset(&l, 0, sizeof l);
  l.h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l.h) fail_msg("dlopen %s: %s", path, dlerror());
  LOOK(create);
  LOOK(destroy);
  LOOK(num_params);
  LOOK(num_inputs);
  LOOK(num_outputs);
  LOOK(param);
  LOOK(input_info);
  LOOK(output_info);
  LOOK(forward);
  LOOK(loss_and_grad);
  LOOK(train_step);
  LOOK(set_lr);
  LOOK(get_lr);
  LOOK(set_hyper);
  LOOK(get_hyper);
  LOOK(get_step);
  LOOK(save);
  LOOK(load);
  LOOK(last_error);
  LOOK(set_threads);
  LOOK(get_threads);
  return l;
}

/* A deterministic batch: x in [-1, 1], the class a function of x (learnable). */
static void make_clf_batch(int64_t n, float *x, int32_t *y) {
  for (int64_t i = 0; i < n * 5; i++) x[i] = (float)sin(0.37 * (double)i * (double)i + 0.1);
  for (int64_t r = 0; r < n; r++) {
    const float *v = x + r * 5;
    y[r] = v[0] + v[1] > 0.5f ? 2 : v[2] - v[3] > 0 ? 1 : 0;
  }
}

static char *tmp;   /* the test's directory */

static const char *write_lib(Built *b, const char *name) {
  const char *path = path_in(tmp, name);
  CgAotOptions ao = {"clf.bp", NULL};
  assert_int_equal(cg_aot_write(b->cg, path, &ao), 0);
  return path;
}

/* ------------------------------------------------------------ tests */

static void test_same_as_jit(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  const char *so = write_lib(&b, "clf.so");
  Lib l = open_lib(so, "clf");
  assert_int_equal(cg_model_jit(b.cg), 0);
  const bprt_model_desc *d = cg_model_desc(b.cg);
  bprt_model *jit = bprt_model_create(d, 1234);
  void *aot = l.create(1234);
  assert_non_null(jit);
  assert_non_null(aot);
  assert_int_equal(l.num_params(), d->nparams);
  assert_int_equal(l.num_inputs(), 2);
  assert_int_equal(l.num_outputs(), 1);
  bprt_tensor_desc ti;
  assert_int_equal(l.input_info(1, &ti), 0);
  assert_string_equal(ti.name, "y");
  assert_true(ti.is_label && ti.rank == 2 && ti.dims[0] == -1 && ti.dims[1] == 3);
  assert_int_equal(l.output_info(0, &ti), 0);
  assert_string_equal(ti.name, "logits");
  /* the same initial parameters */
  for (int i = 0; i < d->nparams; i++) {
    bprt_param_info a, j;
    assert_int_equal(l.param(aot, i, &a), 0);
    assert_int_equal(bprt_model_param(jit, i, &j), 0);
    assert_string_equal(a.name, j.name);
    assert_int_equal(a.numel, j.numel);
    assert_memory_equal(a.values, j.values, sizeof(float) * (size_t)a.numel);
  }
  /* batches at the vector-tail and blocking edges */
  const int64_t sizes[] = {1, 7, 17, 100};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t n = sizes[s];
    float *x = malloc(sizeof(float) * 5 * (size_t)n), la, lj;
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    make_clf_batch(n, x, y);
    const void *in[2] = {x, y};
    assert_int_equal(l.loss_and_grad(aot, n, in, &la), 0);
    assert_int_equal(bprt_model_loss_and_grad(jit, n, in, &lj), 0);
    assert_true(isfinite(la) && la > 0);
    assert_true(la == lj);
    for (int i = 0; i < d->nparams; i++) {
      bprt_param_info a, j;
      l.param(aot, i, &a);
      bprt_model_param(jit, i, &j);
      assert_memory_equal(a.grad, j.grad, sizeof(float) * (size_t)a.numel);
    }
    float *oa = malloc(sizeof(float) * 3 * (size_t)n), *oj = malloc(sizeof(float) * 3 * (size_t)n);
    const void *in_nolabel[2] = {x, NULL};
    assert_int_equal(l.forward(aot, n, in_nolabel, (float *[]){oa}), 0);
    assert_int_equal(bprt_model_forward(jit, n, in_nolabel, (float *[]){oj}), 0);
    assert_memory_equal(oa, oj, sizeof(float) * 3 * (size_t)n);
    free(oa);
    free(oj);
    free(x);
    free(y);
  }
  /* training: the same losses and parameters step by step, and the loss falls */
  enum { N = 64 };
  float x[N * 5], first = 0, la = 0, lj = 0;
  int32_t y[N];
  make_clf_batch(N, x, y);
  const void *in[2] = {x, y};
  for (int t = 0; t < 30; t++) {
    assert_int_equal(l.train_step(aot, N, in, &la), 0);
    assert_int_equal(bprt_model_train_step(jit, N, in, &lj), 0);
    assert_true(la == lj);
    if (t == 0) first = la;
  }
  assert_true(la < 0.7f * first);
  assert_int_equal(l.get_step(aot), 30);
  for (int i = 0; i < d->nparams; i++) {
    bprt_param_info a, j;
    l.param(aot, i, &a);
    bprt_model_param(jit, i, &j);
    assert_memory_equal(a.values, j.values, sizeof(float) * (size_t)a.numel);
  }
  l.destroy(aot);
  bprt_model_destroy(jit);
  dlclose(l.h);
  built_free(&b);
}

static void test_abi_misuse(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  const char *so = write_lib(&b, "clf_misuse.so");
  Lib l = open_lib(so, "clf");
  void *m = l.create(1);
  float x[4 * 5], loss, out[12];
  int32_t y[4];
  make_clf_batch(4, x, y);
  const void *in[2] = {x, y};
  bprt_param_info pi;
#define EXPECT(call, code, msg)                      \
  do {                                               \
    assert_int_equal((call), (code));                \
    assert_string_equal(l.last_error(), (msg));      \
  } while (0)
  EXPECT(l.train_step(NULL, 4, in, &loss), BPRT_E_ARG, "train_step: NULL model");
  EXPECT(l.train_step(m, 0, in, &loss), BPRT_E_BATCH, "train_step: clf: batch must be >= 1, got 0");
  EXPECT(l.loss_and_grad(m, -2, in, &loss), BPRT_E_BATCH, "loss_and_grad: clf: batch must be >= 1, got -2");
  EXPECT(l.forward(m, 4, NULL, (float *[]){out}), BPRT_E_ARG, "forward: clf: inputs is NULL");
  EXPECT(l.forward(m, 4, in, NULL), BPRT_E_ARG, "clf: forward: outputs is NULL");
  EXPECT(l.train_step(m, 4, (const void *[]){x, NULL}, &loss), BPRT_E_ARG,
         "train_step: clf: input 1 ('y') is NULL");
  y[3] = 3;
  EXPECT(l.train_step(m, 4, in, &loss), BPRT_E_LABEL, "train_step: clf: label 3 of input 'y' at row 3 is outside [0, 3)");
  y[3] = -7;
  EXPECT(l.loss_and_grad(m, 4, in, &loss), BPRT_E_LABEL,
         "loss_and_grad: clf: label -7 of input 'y' at row 3 is outside [0, 3)");
  y[3] = 0;
  EXPECT(l.param(m, 4, &pi), BPRT_E_RANGE, "clf: parameter index 4 is out of range [0, 4)");
  EXPECT(l.param(m, -1, &pi), BPRT_E_RANGE, "clf: parameter index -1 is out of range [0, 4)");
  EXPECT(l.param(m, 0, NULL), BPRT_E_ARG, "param: NULL info pointer");
  EXPECT(l.param(NULL, 0, &pi), BPRT_E_ARG, "param: NULL model");
  bprt_tensor_desc ti;
  EXPECT(l.input_info(2, &ti), BPRT_E_RANGE, "clf: input index 2 is out of range [0, 2)");
  EXPECT(l.output_info(-1, &ti), BPRT_E_RANGE, "clf: output index -1 is out of range [0, 1)");
  EXPECT(l.set_hyper(m, "learning_rate", 0.1), BPRT_E_RANGE,
         "clf: unknown hyperparameter 'learning_rate' (known: lr, momentum, dampening, nesterov, beta1, beta2, eps, "
         "weight_decay, alpha, lr_decay, initial_accumulator_value, clip)");
  EXPECT(l.set_hyper(m, NULL, 0.1), BPRT_E_ARG, "set_hyper: NULL name");
  EXPECT(l.set_lr(m, -0.5), BPRT_E_ARG, "clf: lr must be >= 0, got -0.5");
  EXPECT(l.get_lr(m, NULL), BPRT_E_ARG, "get_hyper: NULL value pointer");
  EXPECT(l.save(m, NULL), BPRT_E_ARG, "save: NULL path");
  EXPECT(l.load(NULL, "x"), BPRT_E_ARG, "load: NULL model");
  assert_int_equal(l.get_step(NULL), 0);
  l.destroy(NULL);
  /* hyperparameters by name */
  double v;
  assert_int_equal(l.get_lr(m, &v), 0);
  assert_true(v == 0.01);
  assert_int_equal(l.set_hyper(m, "beta2", 0.99), 0);
  assert_int_equal(l.get_hyper(m, "beta2", &v), 0);
  assert_true(v == 0.99);
  assert_int_equal(l.set_lr(m, 0.5), 0);
  assert_int_equal(l.get_hyper(m, "lr", &v), 0);
  assert_true(v == 0.5);
  /* the pool */
  assert_int_equal(l.set_threads(1), 0);
  assert_int_equal(l.get_threads(), 1);
  assert_int_equal(l.train_step(m, 4, in, &loss), 0);
  assert_int_equal(l.set_threads(2), 0);
  assert_int_equal(l.get_threads(), 2);
  l.destroy(m);
  dlclose(l.h);
  built_free(&b);
}

static void test_checkpoints(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  Built r = build("reg.bp", reg_src, BPRT_OPT_SGD, 0.1);
  Lib l = open_lib(write_lib(&b, "clf_ck.so"), "clf");
  Lib lr = open_lib(write_lib(&r, "reg_ck.so"), "reg");
  enum { N = 16 };
  float x[N * 5], la, lb;
  int32_t y[N];
  make_clf_batch(N, x, y);
  const void *in[2] = {x, y};
  void *a = l.create(5), *c = l.create(6);
  for (int i = 0; i < 4; i++) assert_int_equal(l.train_step(a, N, in, &la), 0);
  const char *ck = path_in(tmp, "clf.safetensors");
  assert_int_equal(l.save(a, ck), 0);
  assert_int_equal(l.load(c, ck), 0);
  assert_int_equal(l.get_step(c), 4);
  for (int i = 0; i < l.num_params(); i++) {
    bprt_param_info pa, pc;
    l.param(a, i, &pa);
    l.param(c, i, &pc);
    assert_memory_equal(pa.values, pc.values, sizeof(float) * (size_t)pa.numel);
  }
  /* resuming is bit-exact, Adam's state and step included */
  assert_int_equal(l.train_step(a, N, in, &la), 0);
  assert_int_equal(l.train_step(c, N, in, &lb), 0);
  assert_true(la == lb);

  char msg[8192];
  /* another model's checkpoint */
  void *g = lr.create(1);
  const char *rck = path_in(tmp, "reg.safetensors");
  assert_int_equal(lr.save(g, rck), 0);
  assert_int_equal(l.load(c, rck), BPRT_E_CHECKPOINT);
  snprintf(msg, sizeof msg, "clf: load: %s: checkpoint is for model 'reg', not 'clf'", rck);
  assert_string_equal(l.last_error(), msg);
  /* errors are per library: reg's runtime has its own last error */
  assert_string_equal(lr.last_error(), "");
  /* corrupt and truncated files */
  const char *bad = path_in(tmp, "bad.safetensors");
  write_text(bad, "\x08\0\0\0\0\0\0\0{\"a\":1}");
  assert_int_equal(l.load(c, bad), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(l.last_error(), bad));
  FILE *f = fopen(ck, "rb");
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  write_bytes(bad, buf, n / 2);
  assert_int_equal(l.load(c, bad), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(l.last_error(), bad));
  /* flip a byte of the JSON header */
  buf[12] ^= 0x55;
  write_bytes(bad, buf, n);
  assert_int_equal(l.load(c, bad), BPRT_E_CHECKPOINT);
  assert_int_equal(l.load(c, path_in(tmp, "absent.safetensors")), BPRT_E_CHECKPOINT);
  /* after all that the model still trains from where it was */
  assert_int_equal(l.get_step(c), 5);
  assert_int_equal(l.train_step(c, N, in, &lb), 0);
  l.destroy(a);
  l.destroy(c);
  lr.destroy(g);
  dlclose(l.h);
  dlclose(lr.h);
  built_free(&b);
  built_free(&r);
}

/* Buffers through the library: enumerated apart from the parameters, at their initial
 * values after create; forward and eval leave them alone; loss_and_grad and train_step
 * move them as PyTorch's BatchNorm1d does (checked against the batch's statistics of
 * the dense layer's output, computed here); the JIT does the same bit for bit; a
 * checkpoint carries them, so a loaded copy predicts and trains identically. */
static void test_buffers(void **state) {
  (void)state;
  Built b = build("bnm.bp", bnm_src, BPRT_OPT_SGD, 0.1);
  Lib l = open_lib(write_lib(&b, "bnm.so"), "bnm");
  int (*num_buffers)(void), (*buffer)(const void *, int, bprt_param_info *);
  memcpy(&num_buffers, (void *[]){sym(l.h, "bnm", "num_buffers")}, sizeof(void *));
  memcpy(&buffer, (void *[]){sym(l.h, "bnm", "buffer")}, sizeof(void *));
  enum { N = 7, C = 6 };
  float x[N * 5], out[N * 3], loss;
  int32_t y[N];
  make_clf_batch(N, x, y);
  const void *in[2] = {x, y};
  float *outs[1] = {out};
  assert_int_equal(num_buffers(), 2);
  assert_int_equal(l.num_params(), 6);   /* h.dense.W, h.dense.b, gamma, beta, logits.W, logits.b */
  void *a = l.create(3);
  bprt_param_info rm, rv, bad;
  assert_int_equal(buffer(a, 0, &rm), 0);
  assert_int_equal(buffer(a, 1, &rv), 0);
  assert_string_equal(rm.name, "h.bn1d.running_mean");
  assert_string_equal(rv.name, "h.bn1d.running_var");
  assert_int_equal(rm.rank, 1);
  assert_int_equal(rm.dims[0], C);
  assert_null(rm.grad);
  assert_int_equal(buffer(a, 2, &bad), BPRT_E_RANGE);
  assert_string_equal(l.last_error(), "bnm: buffer index 2 is out of range [0, 2)");
  for (int c = 0; c < C; c++) assert_true(rm.values[c] == 0.0f && rv.values[c] == 1.0f);
  /* inference reads the running statistics and changes nothing */
  assert_int_equal(l.forward(a, N, in, outs), 0);
  for (int c = 0; c < C; c++) assert_true(rm.values[c] == 0.0f && rv.values[c] == 1.0f);
  /* the batch statistics of z = x W + b (W, b: h.dense's, before the step) */
  bprt_param_info W, bb;
  assert_int_equal(l.param(a, 0, &W), 0);
  assert_int_equal(l.param(a, 1, &bb), 0);
  assert_string_equal(W.name, "h.dense.W");
  double mean[C], var[C];
  for (int c = 0; c < C; c++) {
    double z[N], s = 0, q = 0;
    for (int r = 0; r < N; r++) {
      z[r] = bb.values[c];
      for (int k = 0; k < 5; k++) z[r] += (double)x[r * 5 + k] * W.values[k * C + c];
      s += z[r];
    }
    mean[c] = s / N;
    for (int r = 0; r < N; r++) q += (z[r] - mean[c]) * (z[r] - mean[c]);
    var[c] = q / (N - 1);   /* unbiased */
  }
  assert_int_equal(l.loss_and_grad(a, N, in, &loss), 0);   /* train mode: updates them */
  for (int c = 0; c < C; c++) {
    assert_true(fabs(rm.values[c] - 0.1 * mean[c]) <= 1e-5 * (1 + fabs(mean[c])));
    assert_true(fabs(rv.values[c] - (0.9 + 0.1 * var[c])) <= 1e-5 * (1 + var[c]));
  }
  /* the JIT model from the same module: the same buffers after the same steps */
  assert_int_equal(cg_model_jit(b.cg), 0);
  bprt_model *jit = bprt_model_create(cg_model_desc(b.cg), 3);
  assert_non_null(jit);
  assert_int_equal(bprt_model_loss_and_grad(jit, N, in, &loss), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(l.train_step(a, N, in, &loss), 0);
    assert_int_equal(bprt_model_train_step(jit, N, in, &loss), 0);
  }
  bprt_param_info jm;
  assert_int_equal(bprt_model_buffer(jit, 1, &jm), 0);
  assert_memory_equal(jm.values, rv.values, sizeof(float) * C);
  assert_int_equal(bprt_model_buffer(jit, 0, &jm), 0);
  assert_memory_equal(jm.values, rm.values, sizeof(float) * C);
  /* checkpoints: the buffers under their names, restored exactly */
  const char *ck = path_in(tmp, "bnm.safetensors");
  assert_int_equal(l.save(a, ck), 0);
  void *c2 = l.create(99);
  assert_int_equal(l.load(c2, ck), 0);
  bprt_param_info rm2, rv2;
  buffer(c2, 0, &rm2);
  buffer(c2, 1, &rv2);
  assert_memory_equal(rm2.values, rm.values, sizeof(float) * C);
  assert_memory_equal(rv2.values, rv.values, sizeof(float) * C);
  float out2[N * 3];
  float *outs2[1] = {out2};
  assert_int_equal(l.forward(a, N, in, outs), 0);
  assert_int_equal(l.forward(c2, N, in, outs2), 0);
  assert_memory_equal(out, out2, sizeof out);
  float l1, l2;
  assert_int_equal(l.train_step(a, N, in, &l1), 0);
  assert_int_equal(l.train_step(c2, N, in, &l2), 0);
  assert_true(l1 == l2);
  assert_memory_equal(rv2.values, rv.values, sizeof(float) * C);
  /* a checkpoint without the buffers is refused, and changes nothing */
  void *plain = l.create(4);
  const char *ck_clf = path_in(tmp, "bnm_clf.safetensors");
  Built cb = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  assert_int_equal(cg_model_jit(cb.cg), 0);
  bprt_model *other = bprt_model_create(cg_model_desc(cb.cg), 1);
  assert_int_equal(bprt_model_save(other, ck_clf), 0);
  assert_int_equal(l.load(plain, ck_clf), BPRT_E_CHECKPOINT);
  bprt_param_info pm;
  buffer(plain, 1, &pm);
  for (int c = 0; c < C; c++) assert_true(pm.values[c] == 1.0f);
  bprt_model_destroy(other);
  built_free(&cb);
  bprt_model_destroy(jit);
  l.destroy(a);
  l.destroy(c2);
  l.destroy(plain);
  dlclose(l.h);
  built_free(&b);
}

/* Lines of `cmd` output that contain `key`, joined with spaces. */
static void command_lines(const char *cmd, const char *key, char *out, size_t n) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[1024];
  out[0] = 0;
  while (fgets(line, sizeof line, p))
    if (strstr(line, key)) {
      line[strcspn(line, "\n")] = 0;
      strncat(out, line, n - strlen(out) - 2);
      strcat(out, "\n");
    }
  assert_int_equal(pclose(p), 0);
}

static void test_needed_and_exports(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  const char *so = write_lib(&b, "clf_elf.so");
  char cmd[8192], out[16384];
  snprintf(cmd, sizeof cmd, "readelf -d '%s'", so);
  command_lines(cmd, "(NEEDED)", out, sizeof out);
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    const char *lib = strchr(line, '[');
    assert_non_null(lib);
    if (strcmp(lib, "[libc.so.6]") && strcmp(lib, "[libm.so.6]") && strcmp(lib, "[libpthread.so.0]"))
      fail_msg("unexpected NEEDED entry: %s", line);
  }
  /* exported: the ABI only (nm -D --defined-only: "ADDR T name") */
  snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
  command_lines(cmd, " ", out, sizeof out);
  int nexp = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    const char *name = strrchr(line, ' ') + 1;
    if (strncmp(name, "clf_", 4) != 0) fail_msg("unexpected exported symbol: %s", line);
    nexp++;
  }
  assert_int_equal(nexp, 30);   /* + accumulate_grad, update, set_grad_ready */
  /* the header sits beside the library and compiles, together with another model's */
  Built r = build("reg.bp", reg_src, BPRT_OPT_SGD, 0.1);
  write_lib(&r, "reg_elf.so");
  const char *c = path_in(tmp, "both.c");
  snprintf(out, sizeof out,
           "#include \"clf_elf.h\"\n#include \"reg_elf.h\"\n#include \"clf_elf.h\"\n"
           "#include <stddef.h>\n#include \"runtime/model.h\"\n"
           "#define SAME(a, b, f) _Static_assert(offsetof(a, f) == offsetof(b, f), #f)\n"
           "SAME(bpcc_param_info, bprt_param_info, name); SAME(bpcc_param_info, bprt_param_info, rank);\n"
           "SAME(bpcc_param_info, bprt_param_info, dims); SAME(bpcc_param_info, bprt_param_info, numel);\n"
           "SAME(bpcc_param_info, bprt_param_info, values); SAME(bpcc_param_info, bprt_param_info, grad);\n"
           "SAME(bpcc_tensor_info, bprt_tensor_desc, name); SAME(bpcc_tensor_info, bprt_tensor_desc, is_label);\n"
           "SAME(bpcc_tensor_info, bprt_tensor_desc, rank); SAME(bpcc_tensor_info, bprt_tensor_desc, dims);\n"
           "_Static_assert(sizeof(bpcc_param_info) == sizeof(bprt_param_info), \"size\");\n"
           "_Static_assert(sizeof(bpcc_tensor_info) == sizeof(bprt_tensor_desc), \"size\");\n"
           "#define CODE(x) _Static_assert((int)BPCC_E_##x == (int)BPRT_E_##x, #x)\n"
           "CODE(ARG); CODE(BATCH); CODE(RANGE); CODE(LABEL); CODE(NOMEM); CODE(IO); CODE(CHECKPOINT); CODE(STATE);\n"
           "int main(void) {\n"
           "  clf *a = clf_create(1); reg *b = reg_create(2);\n"
           "  bpcc_param_info pi; bpcc_tensor_info ti;\n"
           "  int rc = clf_param(a, 0, &pi) + reg_input_info(0, &ti) + clf_num_buffers();\n"
           "  rc += clf_buffer(a, 0, &pi) != BPCC_E_RANGE;\n"
           "  _Static_assert(CLF_NUM_BUFFERS == 0, \"no buffers\");\n"
           "  _Static_assert(CLF_INPUT_X_ROW == 5 && CLF_INPUT_Y_CLASSES == 3, \"sizes\");\n"
           "  _Static_assert(REG_OUTPUT_Y_ROW == 1 && REG_NUM_INPUTS == 2, \"sizes\");\n"
           "  clf_destroy(a); reg_destroy(b);\n"
           "  return rc;\n}\n");
  write_text(c, out);
  snprintf(cmd, sizeof cmd,
           "cc -std=c11 -Wall -Wextra -Wstrict-prototypes -Werror -I'%s' -o '%s/both' '%s' '%s/clf_elf.so' "
           "'%s/reg_elf.so' -Wl,-rpath,'%s' && '%s/both'",
           getenv("BPCC_SOURCE_DIR") ? getenv("BPCC_SOURCE_DIR") : ".", tmp, c, tmp, tmp, tmp, tmp);
  assert_int_equal(system(cmd), 0);
  built_free(&b);
  built_free(&r);
}

static void test_two_models_one_process(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  Built r = build("reg.bp", reg_src, BPRT_OPT_SGD, 0.1);
  Lib l = open_lib(write_lib(&b, "clf2.so"), "clf");
  Lib g = open_lib(write_lib(&r, "reg2.so"), "reg");
  void *a = l.create(3), *c = g.create(3);
  enum { N = 32 };
  float x[N * 5], t[N], xr[N * 2], la = 0, lr = 0, la0 = 0, lr0 = 0;
  int32_t y[N];
  make_clf_batch(N, x, y);
  for (int i = 0; i < N; i++) {
    xr[2 * i] = (float)i / N;
    xr[2 * i + 1] = (float)cos(i);
    t[i] = 2 * xr[2 * i] - xr[2 * i + 1] + 0.5f;
  }
  assert_int_equal(g.set_threads(1), 0);
  assert_int_equal(l.set_threads(2), 0);
  assert_int_equal(g.get_threads(), 1);   /* separate pools */
  for (int s = 0; s < 40; s++) {
    assert_int_equal(l.train_step(a, N, (const void *[]){x, y}, &la), 0);
    assert_int_equal(g.train_step(c, N, (const void *[]){xr, t}, &lr), 0);
    if (s == 0) la0 = la, lr0 = lr;
  }
  assert_true(la < la0);
  assert_true(lr < 0.5f * lr0);
  /* an error in one leaves the other's message alone */
  assert_int_equal(g.train_step(c, 0, (const void *[]){xr, t}, &lr), BPRT_E_BATCH);
  assert_string_equal(g.last_error(), "train_step: reg: batch must be >= 1, got 0");
  assert_string_equal(l.last_error(), "");
  l.destroy(a);
  g.destroy(c);
  dlclose(l.h);
  dlclose(g.h);
  built_free(&b);
  built_free(&r);
}

/* A thread that used the library (its per-thread error buffer) and ends after the
 * library was dlclose'd: the buffer's destructor must not live in the unmapped code. */
typedef struct {
  const char *(*last_error)(void);
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int used, closed;
} ThreadCtx;

static void *use_then_wait(void *arg) {
  ThreadCtx *t = arg;
  (void)t->last_error();
  pthread_mutex_lock(&t->mu);
  t->used = 1;
  pthread_cond_broadcast(&t->cv);
  while (!t->closed) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void test_thread_outlives_dlclose(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  Lib l = open_lib(write_lib(&b, "clf_thread.so"), "clf");
  void *m = l.create(1);
  float loss, x[5] = {0};
  int32_t y[1] = {0};
  assert_int_equal(l.train_step(m, 1, (const void *[]){x, y}, &loss), 0);   /* starts the pool */
  l.destroy(m);
  ThreadCtx t = {l.last_error, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, use_then_wait, &t), 0);
  pthread_mutex_lock(&t.mu);
  while (!t.used) pthread_cond_wait(&t.cv, &t.mu);
  pthread_mutex_unlock(&t.mu);
  assert_int_equal(dlclose(l.h), 0);   /* joins the library's pool threads first */
  pthread_mutex_lock(&t.mu);
  t.closed = 1;
  pthread_cond_broadcast(&t.cv);
  pthread_mutex_unlock(&t.mu);
  assert_int_equal(pthread_join(th, NULL), 0);
  built_free(&b);
}

static void test_write_failures(void **state) {
  (void)state;
  Built b = build("clf.bp", clf_src, BPRT_OPT_ADAM, 0.01);
  char *dir = make_temp_dir();
  char *old_tmpdir = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;
  setenv("TMPDIR", dir, 1);
  FILE *diag = tmpfile();
  diag_set_output(diag);
  /* the old library stays when a link fails; no temporary file survives */
  const char *so = path_in(dir, "keep.so");
  write_text(so, "old library");
  CgAotOptions bad_cc = {NULL, "false"};
  int errors = diag_error_count();
  assert_int_equal(cg_aot_write(b.cg, so, &bad_cc), -1);
  assert_int_equal(diag_error_count(), errors + 1);
  CgAotOptions no_cc = {NULL, "/nonexistent/cc"};
  assert_int_equal(cg_aot_write(b.cg, so, &no_cc), -1);
  assert_int_equal(count_entries(dir), 1);
  FILE *f = fopen(so, "r");
  char buf[64] = "";
  assert_non_null(fgets(buf, sizeof buf, f));
  fclose(f);
  assert_string_equal(buf, "old library");
  /* a directory that does not exist */
  assert_int_equal(cg_aot_write(b.cg, path_in(dir, "no/such.so"), NULL), -1);
  assert_int_equal(count_entries(dir), 1);
  /* the messages */
  rewind(diag);
  char text[8192];
  size_t n = fread(text, 1, sizeof text - 1, diag);
  text[n] = 0;
  fclose(diag);
  diag_set_output(NULL);
  char want[4096];
  snprintf(want, sizeof want, "cannot make %s: linking failed: 'false' exited with status 1", so);
  assert_non_null(strstr(text, want));
  snprintf(want, sizeof want, "cannot make %s: linking failed: cannot run '/nonexistent/cc': No such file or directory",
           so);
  assert_non_null(strstr(text, want));
  assert_non_null(strstr(text, "no/such.so: cannot create a file beside"));
  if (old_tmpdir)
    setenv("TMPDIR", old_tmpdir, 1);
  else
    unsetenv("TMPDIR");
  free(old_tmpdir);
  /* writing over an existing library works and the header comes with it */
  const char *so2 = path_in(dir, "net.so");
  assert_int_equal(cg_aot_write(b.cg, so2, NULL), 0);
  assert_int_equal(cg_aot_write(b.cg, so2, NULL), 0);
  struct stat st;
  assert_int_equal(stat(path_in(dir, "net.h"), &st), 0);
  assert_int_equal(count_entries(dir), 3);
  char *hp = cg_aot_header_path("a/b.so");
  assert_string_equal(hp, "a/b.h");
  bp_free(hp);
  hp = cg_aot_header_path("lib");
  assert_string_equal(hp, "lib.h");
  bp_free(hp);
  rm_tree(dir);
  free(dir);
  built_free(&b);
}

static int setup(void **state) {
  (void)state;
  tmp = make_temp_dir();
  return tmp ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  rm_tree(tmp);
  free(tmp);
  return 0;
}

/* Loss scaling through a library (--loss-scale dynamic, the whole pipeline): the
 * descriptor carries the mode and the scale, P_loss_scale reads it; a loss times 2^112
 * overflows its seed at 2^16, so the first P_train_step is skipped (parameters
 * unchanged, P_last_step_skipped 1, the scale halved), the next runs; the library
 * matches the JIT step for step, and its checkpoint holds the scaler. */
static void test_loss_scaling(void **state) {
  (void)state;
  static const char src[] =
      "model big(x: f32[B, 5], y: label[B, 3]) {\n"
      "    h = tanh(dense_xavier(x, 19))\n"
      "    output logits = dense(h, 3)\n"
      "    loss 5192296858534827628530496329220096.0 * softmax_cross_entropy(logits, y)\n"
      "}\n"
      "train big {\n"
      "    optimizer sgd(lr = 3.851859888774472e-35)\n"
      "    loss_scale dynamic\n"
      "}\n";
  PipelineOptions po;
  pipeline_options_default(&po);
  po.codegen = (CgOptions){"native", 3, 2, false, false};
  Compilation c;
  pipeline_init_text(&c, "big.bp", src, strlen(src), &po);
  assert_true(pipeline_run(&c, STAGE_LLVM));
  const char *so = path_in(tmp, "big.so");
  CgAotOptions ao = {"big.bp", NULL};
  assert_int_equal(cg_aot_write(c.cg, so, &ao), 0);
  const bprt_model_desc *d = cg_model_desc(c.cg);
  assert_int_equal(d->loss_scale_mode, BPRT_LOSS_SCALE_DYNAMIC);
  assert_true(d->loss_scale == 65536.0);
  Lib l = open_lib(so, "big");
  double (*loss_scale)(const void *);
  int (*last_skipped)(const void *);
  int64_t (*skipped_steps)(const void *);
  memcpy(&loss_scale, (void *[]){sym(l.h, "big", "loss_scale")}, sizeof(void *));
  memcpy(&last_skipped, (void *[]){sym(l.h, "big", "last_step_skipped")}, sizeof(void *));
  memcpy(&skipped_steps, (void *[]){sym(l.h, "big", "skipped_steps")}, sizeof(void *));
  assert_int_equal(cg_model_jit(c.cg), 0);
  bprt_model *jit = bprt_model_create(d, 7);
  void *aot = l.create(7);
  assert_true(loss_scale(aot) == 65536.0);
  assert_true(loss_scale(NULL) == 1.0);
  enum { N = 32 };
  float x[N * 5], la, lj;
  int32_t y[N];
  make_clf_batch(N, x, y);
  const void *in[2] = {x, y};
  bprt_param_info p0;
  assert_int_equal(l.param(aot, 0, &p0), 0);
  float before[5 * 19];
  memcpy(before, p0.values, sizeof before);
  assert_int_equal(l.train_step(aot, N, in, &la), 0);
  assert_int_equal(bprt_model_train_step(jit, N, in, &lj), 0);
  assert_true(la == lj && isfinite(la));
  assert_int_equal(last_skipped(aot), 1);
  assert_int_equal(skipped_steps(aot), 1);
  assert_true(loss_scale(aot) == 32768.0);
  assert_int_equal(l.get_step(aot), 1);
  assert_memory_equal(p0.values, before, sizeof before);
  for (int t = 0; t < 5; t++) {
    assert_int_equal(l.train_step(aot, N, in, &la), 0);
    assert_int_equal(bprt_model_train_step(jit, N, in, &lj), 0);
    assert_true(la == lj);
    assert_int_equal(last_skipped(aot), 0);
  }
  assert_memory_not_equal(p0.values, before, sizeof before);
  for (int i = 0; i < d->nparams; i++) {
    bprt_param_info a, j;
    l.param(aot, i, &a);
    bprt_model_param(jit, i, &j);
    assert_memory_equal(a.values, j.values, sizeof(float) * (size_t)a.numel);
    assert_memory_equal(a.grad, j.grad, sizeof(float) * (size_t)a.numel);
  }
  /* the checkpoint holds the scaler; a fresh library object resumes it */
  const char *ck = path_in(tmp, "big.safetensors");
  assert_int_equal(l.save(aot, ck), 0);
  void *again = l.create(8);
  assert_int_equal(l.load(again, ck), 0);
  assert_true(loss_scale(again) == 32768.0);
  assert_int_equal(skipped_steps(again), 1);
  assert_int_equal(l.get_step(again), 6);
  l.destroy(again);
  l.destroy(aot);
  bprt_model_destroy(jit);
  dlclose(l.h);
  pipeline_release(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_as_jit),          cmocka_unit_test(test_abi_misuse),
      cmocka_unit_test(test_checkpoints),          cmocka_unit_test(test_needed_and_exports),
      cmocka_unit_test(test_buffers),
      cmocka_unit_test(test_two_models_one_process), cmocka_unit_test(test_thread_outlives_dlclose),
      cmocka_unit_test(test_write_failures),        cmocka_unit_test(test_loss_scaling),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
