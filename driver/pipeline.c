/* driver/pipeline.c — the shared "read, parse, check, lower" pipeline that every
 * subcommand calls (drv_compile), so all of them report the same diagnostics. */
#include "driver/driver.h"

#include <errno.h>
#include <string.h>

bool drv_read_file(const char *path, char **text, size_t *len) {
  bool is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "bpcc: error: cannot open '%s': %s\n", path, strerror(errno));
    return false;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = bp_xmalloc(cap);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = bp_xrealloc(buf, cap);
    }
    size_t k = fread(buf + n, 1, cap - n, f);
    n += k;
    if (k == 0) break;
  }
  bool err = ferror(f);
  int saved = errno;
  if (!is_stdin) fclose(f);
  if (err) {
    fprintf(stderr, "bpcc: error: cannot read '%s': %s\n", path, strerror(saved));
    bp_free(buf);
    return false;
  }
  *text = buf;
  *len = n;
  return true;
}

bool drv_compile(DrvCompilation *c, const char *path, DrvStage upto, const char *model_name) {
  memset(c, 0, sizeof *c);
  c->path = path;
  c->name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  c->file = -1;
  char *text;
  size_t len;
  if (!drv_read_file(path, &text, &len)) return false;
  c->file = diag_add_file(c->name, text, len);
  bp_free(text);
  c->arena = arena_new();
  if (upto == DRV_READ) return true;

  int errors = diag_error_count();
  c->program = fe_parse(c->arena, c->file);
  if (upto == DRV_PARSE) return diag_error_count() == errors;

  c->unit = fe_check(c->arena, c->program);
  if (diag_error_count() != errors) return false;
  if (model_name) {
    c->model = fe_unit_model(c->unit, model_name);
    if (!c->model) {
      fprintf(stderr, "bpcc: error: %s has no model named '%s'\n", c->name, model_name);
      return false;
    }
  } else if (c->unit->nmodels > 0) {
    c->model = c->unit->models[0];
  }
  if (upto == DRV_CHECK) return true;

  c->module = ir_module_new();
  c->func = fe_lower_ex(c->module, c->model, drv_lower_activations);
  return true;
}

bool drv_lower_activations;

void drv_release(DrvCompilation *c) {
  if (c->module) ir_module_free(c->module);
  if (c->arena) arena_free(c->arena);
  memset(c, 0, sizeof *c);
}
