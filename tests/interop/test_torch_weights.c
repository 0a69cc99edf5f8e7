/* tests/interop/test_torch_weights.c — weights written by PyTorch, loaded without Python.
 *
 * tests/fixtures/interop/make_fixtures.py (run by hand, with python3-torch) trained
 * examples/spiral.bp's network in PyTorch and saved it with docs/interop.md's recipe:
 * bpcc's names, W = weight.T. Here examples/spiral.bp is compiled by the JIT, the file is
 * loaded through bprt_model_load (the loader of `bpcc eval`, --resume and the C ABI), and
 * the forward pass must give PyTorch's probabilities: every one within 1e-5 (float32 on
 * both sides; the kernels differ in summation order and in tanh/exp, which the fixture
 * run measured under 1e-6), the same argmax for every row (no row is a near tie: the
 * fixture's min_margin), and the loss within 1e-5. The same net saved with PyTorch's own
 * names and layout, and with the names fixed but the weights not transposed, fail with
 * the messages docs/interop.md shows, and leave the model unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>

#include "runtime/data.h"
#include "tests/train/jit.h"

#define PROB_TOL 1e-5
#define LOSS_TOL 1e-5

static char *fixture(const char *name) {
  const char *src = getenv("BPCC_SOURCE_DIR");
  assert_non_null(src);
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/tests/fixtures/interop/%s", src, name);
  return strdup(buf);
}

static TestJit spiral;
static bprt_model *model;

static int setup(void **state) {
  (void)state;
  const char *src = getenv("BPCC_SOURCE_DIR");
  if (!src) return -1;
  char path[4096];
  snprintf(path, sizeof path, "%s/examples/spiral.bp", src);
  char *text = test_slurp(path, NULL);
  if (!text || !test_jit(&spiral, text, BPRT_OPT_ADAM, NULL)) return -1;
  free(text);
  model = bprt_model_create(spiral.desc, 1);
  return model ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  bprt_model_destroy(model);
  test_jit_free(&spiral);
  return 0;
}

static double meta_number(const BprtCheckpoint *ck, const char *key) {
  const char *v = bprt_st_meta(ck, key);
  assert_non_null(v);
  return strtod(v, NULL);
}

static void test_torch_outputs(void **state) {
  (void)state;
  char *weights = fixture("spiral_from_torch.safetensors"), *xp = fixture("spiral_x.npy"),
       *yp = fixture("spiral_y.npy"), *ep = fixture("spiral_expected.safetensors");
  if (bprt_model_load(model, weights) != BPRT_OK) fail_msg("%s", bprt_last_error());
  BprtDataset *d = bprt_load_npy(xp, yp);
  BprtCheckpoint *ex = bprt_st_read(ep);
  if (!d || !ex) fail_msg("%s", bprt_last_error());
  const BprtTensorRef *want = bprt_st_find(ex, "probs");
  assert_non_null(want);
  assert_int_equal(want->rank, 2);
  assert_int_equal(want->dims[0], d->n);
  assert_int_equal(want->dims[1], 3);
  assert_int_equal(d->n, 300);

  float *probs = calloc((size_t)d->n * 3, sizeof *probs);
  const void *in[2] = {d->x, d->labels};
  float *out[1] = {probs};
  float loss;
  assert_int_equal(bprt_model_eval(model, d->n, in, out, &loss), BPRT_OK);
  double worst = 0;
  int64_t correct = 0, agree = 0;
  for (int64_t r = 0; r < d->n; r++) {
    int mine = 0, theirs = 0;
    for (int c = 0; c < 3; c++) {
      double diff = fabs((double)probs[r * 3 + c] - (double)want->data[r * 3 + c]);
      if (diff > worst) worst = diff;
      if (probs[r * 3 + c] > probs[r * 3 + mine]) mine = c;
      if (want->data[r * 3 + c] > want->data[r * 3 + theirs]) theirs = c;
    }
    agree += mine == theirs;
    correct += mine == d->labels[r];
  }
  printf("PyTorch's weights in bpcc: largest probability difference %.3g (bound %g); loss %.9f, PyTorch %s; "
         "%" PRId64 "/%" PRId64 " rows right, PyTorch %s\n",
         worst, PROB_TOL, (double)loss, bprt_st_meta(ex, "loss"), correct, d->n, bprt_st_meta(ex, "correct"));
  assert_true(worst <= PROB_TOL);
  assert_int_equal(agree, d->n);
  assert_int_equal(correct, (int64_t)meta_number(ex, "correct"));
  assert_true(fabs((double)loss - meta_number(ex, "loss")) <= LOSS_TOL);
  free(probs);
  bprt_st_free(ex);
  bprt_dataset_free(d);
  free(weights), free(xp), free(yp), free(ep);
}

/* A failed load names the problem exactly and changes nothing. */
static void expect_load_error(const char *path, const char *msg) {
  const bprt_model_desc *desc = spiral.desc;
  size_t bytes = sizeof(float) * (size_t)desc->param_floats;
  float *before = malloc(bytes);
  memcpy(before, bprt_model_params(model), bytes);
  assert_int_equal(bprt_model_load(model, path), BPRT_E_CHECKPOINT);
  assert_string_equal(bprt_last_error(), msg);
  assert_memory_equal(before, bprt_model_params(model), bytes);
  free(before);
}

static void test_torch_names(void **state) {
  (void)state;
  char *path = fixture("spiral_torch_names.safetensors");
  char msg[2048];
  snprintf(msg, sizeof msg,
           "spiral: load: %s: the tensor names do not match model 'spiral' (docs/interop.md)\n"
           "  missing (6): 'h1.W' [2,64], 'h1.b' [64], 'h2.W' [64,64], 'h2.b' [64], 'logits.W' [64,3], 'logits.b' [3]\n"
           "  unknown (6): '0.bias' [64], '0.weight' [64,2], '2.bias' [64], '2.weight' [64,64], '4.bias' [3], "
           "'4.weight' [3,64]\n"
           "  '0.bias' [64] could be 'h1.b' [64]\n"
           "  '0.weight' [64,2] could be 'h1.W' [2,64] transposed\n"
           "  '2.bias' [64] could be 'h2.b' [64]\n"
           "  '2.weight' [64,64] could be 'h2.W' [64,64], perhaps transposed\n"
           "  '4.bias' [3] could be 'logits.b' [3]\n"
           "  '4.weight' [3,64] could be 'logits.W' [64,3] transposed\n"
           "  bpcc's dense W is [in, out]; a torch nn.Linear weight is [out, in]: save weight.T",
           path);
  expect_load_error(path, msg);
  free(path);
}

/* bpcc's names on PyTorch's layout: the fixture with every W's dims swapped (the bytes
 * are not looked at before the shapes agree). */
static void test_not_transposed(void **state) {
  (void)state;
  char *src = fixture("spiral_from_torch.safetensors");
  BprtCheckpoint *ck = bprt_st_read(src);
  assert_non_null(ck);
  int n = bprt_st_count(ck);
  BprtTensorRef t[8];
  assert_true(n <= 8);
  for (int i = 0; i < n; i++) {
    t[i] = *bprt_st_tensor(ck, i);
    if (t[i].rank == 2) {
      int64_t d0 = t[i].dims[0];
      t[i].dims[0] = t[i].dims[1];
      t[i].dims[1] = d0;
    }
  }
  char *dir = test_tmpdir();
  char *path = test_path(dir, "renamed.safetensors");
  assert_int_equal(bprt_st_write(path, t, n, NULL, 0), 0);
  char msg[2048];
  snprintf(msg, sizeof msg,
           "spiral: load: %s: tensor 'h1.W' has shape [64,2], expected [2,64]: transposed? (so are 'logits.W') "
           "bpcc's dense W is [in, out]; a torch nn.Linear weight is [out, in]: save weight.T (docs/interop.md)",
           path);
  expect_load_error(path, msg);
  bprt_st_free(ck);
  unlink(path);
  rmdir(dir);
  free(path), free(dir), free(src);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_outputs),
      cmocka_unit_test(test_torch_names),
      cmocka_unit_test(test_not_transposed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
