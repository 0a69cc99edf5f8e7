/* tests/train/test_stop.c — issue 12, "nothing lost", in the loop and the model object:
 * a run stopped (BprtTrainOptions.stop) after any step and resumed from the checkpoint it
 * wrote ends with the same bytes as a run never stopped; --resume refuses out-of-range
 * metadata by key and file; a checkpoint with a NaN or an infinity is refused naming the
 * tensor; weights-only loading (train --init) takes the parameters of any checkpoint. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "tests/train/jit.h"

/* Dropout, so that the step counter must continue; no validation set, so that the
 * plateau schedule sees the epoch's training loss, which a stopped epoch must carry. */
static const char *spiral_bp =
    "model spiral(x: f32[B, 2], y: label[B, 3]) {\n"
    "    h1     = dropout(tanh(dense_xavier(x, 16)), 0.1)\n"
    "    logits = dense_xavier(h1, 3)\n"
    "    output probs = softmax(logits)\n"
    "    loss softmax_cross_entropy(logits, y)\n"
    "}\n";

typedef struct {
  TestJit j;
  BprtDataset *data;   /* 100 rows: batches 16 x 6 + 4, 7 steps an epoch */
  char *dir, *a, *b, *hop, *log_a, *log_b;
  FILE *sink;
} Fixture;

static int setup(void **state) {
  Fixture *f = calloc(1, sizeof *f);
  double hyper[BPRT_H__COUNT];
  bprt_optimizer_config d;
  bprt_optimizer_init(&d, BPRT_OPT_ADAM);
  memcpy(hyper, d.hyper, sizeof hyper);
  hyper[BPRT_H_LR] = 1e-2;
  if (!test_jit(&f->j, spiral_bp, BPRT_OPT_ADAM, hyper)) return -1;
  f->data = bprt_gen_spiral(100, 3, 0.2, 7);
  f->dir = test_tmpdir();
  f->a = test_path(f->dir, "a.safetensors");
  f->b = test_path(f->dir, "b.safetensors");
  f->hop = test_path(f->dir, "hop.safetensors");
  f->log_a = test_path(f->dir, "a.csv");
  f->log_b = test_path(f->dir, "b.csv");
  f->sink = fopen("/dev/null", "w");
  *state = f;
  return f->data && f->dir && f->sink ? 0 : -1;
}

static int teardown(void **state) {
  Fixture *f = *state;
  char *files[] = {f->a, f->b, f->hop, f->log_a, f->log_b};
  for (int i = 0; i < 5; i++) {
    unlink(files[i]);
    free(files[i]);
  }
  rmdir(f->dir);
  free(f->dir);
  fclose(f->sink);
  bprt_dataset_free(f->data);
  test_jit_free(&f->j);
  free(f);
  return 0;
}

static void options(Fixture *f, BprtTrainOptions *o) {
  bprt_train_options_defaults(o);
  o->epochs = 3;
  o->batch = 16;
  o->seed = 5;
  o->out = f->sink;
  o->progress = 0;
  bprt_schedule_init(&o->schedule, BPRT_SCHED_CONSTANT, 1e-2);
  assert_int_equal(bprt_schedule_parse("plateau(patience = 0, factor = 0.5)", &o->schedule, NULL), 0);
}

/* The CSV's rows without the seconds column (the last field). */
static char *csv_without_seconds(const char *path) {
  char *text = test_slurp(path, NULL);
  assert_non_null(text);
  char *out = calloc(strlen(text) + 1, 1);
  size_t n = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *comma = strrchr(line, ',');
    memcpy(out + n, line, (size_t)(comma - line));
    n += (size_t)(comma - line);
    out[n++] = '\n';
  }
  free(text);
  return out;
}

/* A run stopped after every single step (the flag is set before it starts: each run
 * takes one step, or finishes an epoch and stops at its end) and resumed each time
 * from the checkpoint it left, 21 runs in all, ends with the checkpoint, and the CSV
 * rows, of a run never stopped. */
static void test_stop_after_every_step(void **state) {
  Fixture *f = *state;
  BprtTrainOptions o;
  BprtTrainResult r;
  options(f, &o);
  o.save_path = f->a;
  o.log_path = f->log_a;
  o.log_steps = true;
  bprt_model *m = bprt_model_create(f->j.desc, o.seed);
  assert_int_equal(bprt_train(m, f->data, NULL, &o, &r), 0);
  assert_false(r.interrupted);
  assert_int_equal(r.steps, 21);
  bprt_model_destroy(m);

  volatile sig_atomic_t stop = 1;
  options(f, &o);
  o.save_path = f->b;
  o.interrupt_path = f->hop;
  o.log_path = f->log_b;
  o.log_steps = true;
  o.stop = &stop;
  int runs = 0;
  for (;;) {
    m = bprt_model_create(f->j.desc, o.seed);
    int rc = bprt_train(m, f->data, NULL, &o, &r);
    if (rc) fail_msg("run %d: %s", runs + 1, bprt_last_error());
    bprt_model_destroy(m);
    runs++;
    if (!r.interrupted) break;
    assert_string_equal(r.checkpoint, f->hop);
    if (runs == 1) {   /* after step 1: epoch 1, batch 1 of 7, 16 rows done */
      assert_int_equal(r.steps, 1);
      assert_int_equal(r.stop_epoch, 1);
      assert_int_equal(r.stop_batch, 1);
      assert_int_equal(r.stop_batches, 7);
      BprtCheckpoint *ck = bprt_st_read(f->hop);
      assert_non_null(ck);
      assert_string_equal(bprt_st_meta(ck, "bpcc.epoch"), "0");
      assert_string_equal(bprt_st_meta(ck, "bpcc.step"), "1");
      assert_string_equal(bprt_st_meta(ck, "bpcc.epoch_rows"), "16");
      assert_string_equal(bprt_st_meta(ck, "bpcc.rng"), "philox4x32-10 seed=5 shuffle_epoch=0 shuffle_row=16 dropout_step=1");
      bprt_st_free(ck);
    }
    if (runs == 7) {   /* step 7 ends epoch 1: the run goes on to the epoch's end, then stops */
      assert_int_equal(r.steps, 7);
      assert_int_equal(r.stop_epoch, 1);
      assert_int_equal(r.stop_batch, 7);
      BprtCheckpoint *ck = bprt_st_read(f->hop);
      assert_string_equal(bprt_st_meta(ck, "bpcc.epoch"), "1");
      assert_string_equal(bprt_st_meta(ck, "bpcc.epoch_rows"), "0");
      bprt_st_free(ck);
    }
    o.resume_path = f->hop;
    assert_true(runs < 30);
  }
  assert_int_equal(runs, 21);
  size_t na, nb;
  char *fa = test_slurp(f->a, &na), *fb = test_slurp(f->b, &nb);
  assert_non_null(fa);
  assert_non_null(fb);
  assert_int_equal(na, nb);
  assert_memory_equal(fa, fb, na);
  free(fa), free(fb);
  char *la = csv_without_seconds(f->log_a), *lb = csv_without_seconds(f->log_b);
  assert_string_equal(la, lb);   /* the epochs' losses and accuracies too */
  free(la), free(lb);
}

/* Copy checkpoint src to dst with metadata key set to value (NULL: removed), and key2
 * to value2 if key2. */
static void rewrite_meta(const char *src, const char *dst, const char *key, const char *value, const char *key2,
                         const char *value2) {
  BprtCheckpoint *ck = bprt_st_read(src);
  assert_non_null(ck);
  int nt = bprt_st_count(ck), nm = bprt_st_meta_count(ck), k = 0;
  BprtTensorRef *t = calloc((size_t)nt, sizeof *t);
  BprtMeta *meta = calloc((size_t)nm + 1, sizeof *meta);
  for (int i = 0; i < nt; i++) t[i] = *bprt_st_tensor(ck, i);
  bool found = false;
  for (int i = 0; i < nm; i++) {
    BprtMeta e = *bprt_st_meta_at(ck, i);
    if (key2 && !strcmp(e.key, key2)) {
      if (!value2) continue;
      e.value = value2;
    }
    if (!strcmp(e.key, key)) {
      found = true;
      if (!value) continue;
      e.value = value;
    }
    meta[k++] = e;
  }
  if (!found && value) meta[k++] = (BprtMeta){key, value};
  assert_int_equal(bprt_st_write(dst, t, nt, meta, k), 0);
  free(t), free(meta);
  bprt_st_free(ck);
}

/* A resume from src with key = value (and bpcc.rng = rng if rng): -1 and exactly
 * "DST: want" (want NULL: 0). */
static void expect_resume_rng(Fixture *f, const char *src, const char *key, const char *value, const char *rng,
                              int64_t epochs, const char *want) {
  rewrite_meta(src, f->b, key, value, rng ? "bpcc.rng" : NULL, rng);
  BprtTrainOptions o;
  BprtTrainResult r;
  options(f, &o);
  o.epochs = epochs;
  o.resume_path = f->b;
  bprt_model *m = bprt_model_create(f->j.desc, o.seed);
  int rc = bprt_train(m, f->data, NULL, &o, &r);
  bprt_model_destroy(m);
  if (!want) {
    if (rc) fail_msg("%s = '%s': %s", key, value ? value : "(removed)", bprt_last_error());
    return;
  }
  char full[1024];
  snprintf(full, sizeof full, "%s: %s", f->b, want);
  if (rc != -1) fail_msg("%s = '%s' was accepted", key, value ? value : "(removed)");
  assert_string_equal(bprt_last_error(), full);
}

static void expect_resume(Fixture *f, const char *src, const char *key, const char *value, int64_t epochs, const char *want) {
  expect_resume_rng(f, src, key, value, NULL, epochs, want);
}

/* --resume checks every key of the loop's state: form, range, agreement. */
static void test_resume_metadata_ranges(void **state) {
  Fixture *f = *state;
  /* a checkpoint inside epoch 2: 7 + 2 steps, 32 rows of epoch 2 done */
  volatile sig_atomic_t stop = 1;
  BprtTrainOptions o;
  BprtTrainResult r;
  options(f, &o);
  o.stop = &stop;
  o.interrupt_path = f->hop;
  for (int run = 0; run < 9; run++) {
    bprt_model *m = bprt_model_create(f->j.desc, o.seed);
    assert_int_equal(bprt_train(m, f->data, NULL, &o, &r), 0);
    bprt_model_destroy(m);
    o.resume_path = f->hop;
  }
  BprtCheckpoint *ck = bprt_st_read(f->hop);
  assert_string_equal(bprt_st_meta(ck, "bpcc.epoch"), "1");
  assert_string_equal(bprt_st_meta(ck, "bpcc.step"), "9");
  assert_string_equal(bprt_st_meta(ck, "bpcc.epoch_rows"), "32");
  const char *sched = bprt_st_meta(ck, "bpcc.schedule");
  char good_sched[256];
  snprintf(good_sched, sizeof good_sched, "%s", sched);
  bprt_st_free(ck);
  const char *h = f->hop;
  expect_resume(f, h, "bpcc.epoch_rows", "32", 3, NULL);   /* the file as it is resumes */

  expect_resume(f, h, "bpcc.epoch", "-1", 3, "metadata bpcc.epoch = '-1' is out of range (a count below 2^40)");
  expect_resume(f, h, "bpcc.epoch", "1099511627776", 3,
                "metadata bpcc.epoch = '1099511627776' is out of range (a count below 2^40)");
  expect_resume(f, h, "bpcc.epoch", "1x", 3, "metadata bpcc.epoch = '1x' is not a count");
  expect_resume(f, h, "bpcc.epoch", NULL, 3, "not a bpcc training checkpoint (metadata key 'bpcc.epoch' missing)");
  expect_resume(f, h, "bpcc.step", "99999999999999999999", 3, "metadata bpcc.step = '99999999999999999999' is not a count");
  expect_resume(f, h, "bpcc.step", "10", 3, "metadata bpcc.step = '10' disagrees with step = '9'");
  expect_resume(f, h, "bpcc.seed", "-5", 3, "metadata bpcc.seed = '-5' is not a count");
  expect_resume_rng(f, h, "bpcc.epoch_rows", "100", "philox4x32-10 seed=5 shuffle_epoch=1 shuffle_row=100 dropout_step=9", 3,
                    "metadata bpcc.epoch_rows = '100' is out of range: the training data has 100 rows (resume with the same "
                    "data)");
  expect_resume(f, h, "bpcc.epoch_rows", "100", 3,   /* bpcc.rng says otherwise */
                "metadata bpcc.rng = 'philox4x32-10 seed=5 shuffle_epoch=1 shuffle_row=32 dropout_step=9' is out of range: it "
                "disagrees with bpcc.seed, bpcc.epoch, bpcc.epoch_rows or bpcc.step (seed=5 shuffle_epoch=1 shuffle_row=100 "
                "dropout_step=9)");
  /* a checkpoint from before the position inside an epoch was kept: no bpcc.epoch_rows,
   * _loss_sum, _correct, and bpcc.rng without shuffle_row; resumed at an epoch's start */
  rewrite_meta(h, f->a, "bpcc.epoch_rows", NULL, "bpcc.rng", "philox4x32-10 seed=5 shuffle_epoch=1 dropout_step=9");
  rewrite_meta(f->a, f->a, "bpcc.epoch_correct", NULL, NULL, NULL);
  expect_resume(f, f->a, "bpcc.epoch_loss_sum", NULL, 3, NULL);
  expect_resume(f, f->a, "bpcc.epoch_loss_sum", "0", 3, NULL);
  expect_resume(f, f->a, "bpcc.epoch_loss_sum", "1.5", 3,
                "metadata bpcc.epoch_loss_sum = '1.5' is out of range: no rows done (bpcc.epoch_rows = 0)");
  expect_resume(f, h, "bpcc.epoch_rows", "-16", 3, "metadata bpcc.epoch_rows = '-16' is out of range (a count below 2^40)");
  expect_resume(f, h, "bpcc.epoch_correct", "33", 3,
                "metadata bpcc.epoch_correct = '33' is out of range: more than the 32 rows done (bpcc.epoch_rows)");
  expect_resume(f, h, "bpcc.epoch_loss_sum", "nan", 3, "metadata bpcc.epoch_loss_sum = 'nan' is out of range (a finite number)");
  expect_resume(f, h, "bpcc.epoch_loss_sum", "1e999", 3,
                "metadata bpcc.epoch_loss_sum = '1e999' is out of range (a finite number)");
  expect_resume(f, h, "bpcc.rng", "philox4x32-10 seed=5 shuffle_epoch=1 shuffle_row=31 dropout_step=9", 3,
                "metadata bpcc.rng = 'philox4x32-10 seed=5 shuffle_epoch=1 shuffle_row=31 dropout_step=9' is out of range: it "
                "disagrees with bpcc.seed, bpcc.epoch, bpcc.epoch_rows or bpcc.step (seed=5 shuffle_epoch=1 shuffle_row=32 "
                "dropout_step=9)");
  expect_resume(f, h, "bpcc.rng", "mt19937", 3, "metadata bpcc.rng = 'mt19937' is malformed");
  expect_resume(f, h, "bpcc.rng", NULL, 3, "not a bpcc training checkpoint (metadata key 'bpcc.rng' missing)");
  expect_resume(f, h, "bpcc.schedule", "plateau lr=nan best=1 num_bad=0 cooldown_left=0", 3,
                "metadata bpcc.schedule = 'plateau lr=nan best=1 num_bad=0 cooldown_left=0' is out of range: lr is not a "
                "finite rate >= 0");
  expect_resume(f, h, "bpcc.schedule", "plateau lr=0.01 best=-inf num_bad=0 cooldown_left=0", 3,
                "metadata bpcc.schedule = 'plateau lr=0.01 best=-inf num_bad=0 cooldown_left=0' is out of range: best is not "
                "a number or +inf");
  expect_resume(f, h, "bpcc.schedule", "plateau lr=0.01 best=1 num_bad=-2 cooldown_left=0", 3,
                "metadata bpcc.schedule = 'plateau lr=0.01 best=1 num_bad=-2 cooldown_left=0' is out of range: num_bad is "
                "not a count below 2^40");
  expect_resume(f, h, "bpcc.schedule", "plateau lr=0.01 best=1 num_bad=0 cooldown_left=0 x", 3,
                "metadata bpcc.schedule = 'plateau lr=0.01 best=1 num_bad=0 cooldown_left=0 x' is malformed");
  expect_resume(f, h, "bpcc.schedule", "cosine lr=0.01 best=inf num_bad=0 cooldown_left=0", 3,
                "the checkpoint's schedule is cosine, this run's is plateau");
  /* the position inside epoch 2 needs --epochs 2 at least */
  expect_resume(f, h, "bpcc.schedule", good_sched, 1, "the checkpoint stopped inside epoch 2; --epochs 1 asks for fewer");
  expect_resume(f, h, "bpcc.schedule", good_sched, 2, NULL);
}

/* A NaN or an infinity in a checkpoint is refused by every loader, naming the tensor
 * and the file, and the model stays as it was. */
static void test_nonfinite_checkpoint(void **state) {
  Fixture *f = *state;
  BprtTrainOptions o;
  BprtTrainResult r;
  options(f, &o);
  o.epochs = 1;
  o.save_path = f->a;
  bprt_model *m = bprt_model_create(f->j.desc, o.seed);
  assert_int_equal(bprt_train(m, f->data, NULL, &o, &r), 0);
  bprt_model_destroy(m);

  bprt_model *src = bprt_model_create(f->j.desc, 1), *dst = bprt_model_create(f->j.desc, 2);
  assert_int_equal(bprt_model_load(src, f->a), BPRT_OK);
  bprt_param_info p;
  int i = bprt_model_find_param(src, "logits.W");
  assert_true(i >= 0);
  assert_int_equal(bprt_model_param(src, i, &p), BPRT_OK);
  float keep = p.values[5];
  p.values[5] = NAN;
  assert_int_equal(bprt_model_save(src, f->b), BPRT_OK);
  int64_t nf = f->j.desc->param_floats;
  float *before = malloc(sizeof(float) * (size_t)nf);
  memcpy(before, bprt_model_params(dst), sizeof(float) * (size_t)nf);
  char want[1024];
  /* the ABI's load (P_load) */
  assert_int_equal(bprt_model_load(dst, f->b), BPRT_E_CHECKPOINT);
  snprintf(want, sizeof want, "spiral: load: %s: tensor 'logits.W' holds a non-finite value (nan at flat index 5)", f->b);
  assert_string_equal(bprt_last_error(), want);
  assert_memory_equal(bprt_model_params(dst), before, sizeof(float) * (size_t)nf);
  /* eval --weights */
  assert_int_equal(bprt_checkpoint_load(dst, f->b, NULL), -1);
  assert_string_equal(bprt_last_error(), want);
  /* train --resume (and the message names the file resumed from) */
  BprtTrainState st = {.schedule = o.schedule};
  assert_int_equal(bprt_checkpoint_load(dst, f->b, &st), -1);
  assert_string_equal(bprt_last_error(), want);
  /* train --init */
  assert_int_equal(bprt_model_load_weights(dst, f->b), BPRT_E_CHECKPOINT);
  assert_string_equal(bprt_last_error(), want);
  assert_memory_equal(bprt_model_params(dst), before, sizeof(float) * (size_t)nf);

  /* the optimizer state: -inf in Adam's exp_avg_sq of h1.b */
  p.values[5] = keep;
  i = bprt_model_find_param(src, "h1.b");
  assert_int_equal(bprt_model_param(src, i, &p), BPRT_OK);
  float *state_block = bprt_model_opt_state(src);
  state_block[f->j.desc->param_floats + (p.values - bprt_model_params(src)) + 2] = -INFINITY;
  assert_int_equal(bprt_model_save(src, f->b), BPRT_OK);
  assert_int_equal(bprt_model_load(dst, f->b), BPRT_E_CHECKPOINT);
  snprintf(want, sizeof want, "spiral: load: %s: tensor 'optim.h1.b.exp_avg_sq' holds a non-finite value (-inf at flat index 2)",
           f->b);
  assert_string_equal(bprt_last_error(), want);
  assert_memory_equal(bprt_model_params(dst), before, sizeof(float) * (size_t)nf);
  /* weights only pass over the optimizer state, bad or not */
  assert_int_equal(bprt_model_load_weights(dst, f->b), BPRT_OK);
  free(before);
  bprt_model_destroy(src);
  bprt_model_destroy(dst);
}

/* Weights only (train --init): the parameters of a checkpoint of another optimizer and
 * of a plain safetensors file (as PyTorch's safetensors.torch.save_file writes: no bpcc
 * metadata, tensors in its own order); optimizer state reset, step 0. */
static void test_load_weights(void **state) {
  Fixture *f = *state;
  BprtTrainOptions o;
  BprtTrainResult r;
  options(f, &o);
  o.epochs = 1;
  o.save_path = f->a;
  bprt_model *trained = bprt_model_create(f->j.desc, o.seed);
  assert_int_equal(bprt_train(trained, f->data, NULL, &o, &r), 0);
  const bprt_model_desc *d = f->j.desc;
  size_t pbytes = sizeof(float) * (size_t)d->param_floats;

  TestJit sgd;   /* the same model, trained with SGD: Adam's state does not fit it */
  assert_true(test_jit(&sgd, spiral_bp, BPRT_OPT_MOMENTUM, NULL));
  bprt_model *m = bprt_model_create(sgd.desc, 3);
  assert_int_equal(bprt_model_load(m, f->a), BPRT_E_CHECKPOINT);
  assert_int_equal(bprt_model_load_weights(m, f->a), BPRT_OK);
  assert_memory_equal(bprt_model_params(m), bprt_model_params(trained), pbytes);
  assert_int_equal(bprt_model_get_step(m), 0);
  float *st = bprt_model_opt_state(m);
  for (int64_t k = 0; k < sgd.desc->opt_state_floats; k++) assert_true(st[k] == 0.0f);

  /* a plain file, the tensors in reverse (sorted by name, as torch writes them) */
  BprtTensorRef t[8];
  int nt = 0;
  for (int k = d->nparams - 1; k >= 0; k--) {
    bprt_param_info p;
    assert_int_equal(bprt_model_param(trained, k, &p), BPRT_OK);
    t[nt] = (BprtTensorRef){p.name, p.rank, {0}, p.values};
    for (int q = 0; q < p.rank; q++) t[nt].dims[q] = p.dims[q];
    nt++;
  }
  BprtMeta fmt = {"format", "pt"};
  assert_int_equal(bprt_st_write(f->b, t, nt, &fmt, 1), 0);
  bprt_model *m2 = bprt_model_create(d, 9);
  assert_int_equal(bprt_model_load_weights(m2, f->b), BPRT_OK);
  assert_memory_equal(bprt_model_params(m2), bprt_model_params(trained), pbytes);
  /* a tensor the model lacks, or one missing: refused, all or nothing */
  t[nt] = (BprtTensorRef){"extra.W", 1, {3}, t[0].data};
  assert_int_equal(bprt_st_write(f->b, t, nt + 1, NULL, 0), 0);
  assert_int_equal(bprt_model_load_weights(m2, f->b), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(bprt_last_error(), "'extra.W'"));
  assert_int_equal(bprt_st_write(f->b, t, nt - 1, NULL, 0), 0);
  assert_int_equal(bprt_model_load_weights(m2, f->b), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(bprt_last_error(), "missing tensor"));
  assert_memory_equal(bprt_model_params(m2), bprt_model_params(trained), pbytes);
  bprt_model_destroy(m);
  bprt_model_destroy(m2);
  bprt_model_destroy(trained);
  test_jit_free(&sgd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stop_after_every_step),
      cmocka_unit_test(test_resume_metadata_ranges),
      cmocka_unit_test(test_nonfinite_checkpoint),
      cmocka_unit_test(test_load_weights),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
