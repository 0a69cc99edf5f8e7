/* driver/output.c — where a command's output goes: -o PATH, `-o -` or standard output.
 *
 * Every output has a kind, and the kinds are one table (out_kinds[] below, listed in
 * docs/cli.md): what it is, the extensions its file takes, whether it is binary and
 * whether standard output can take it. Three rules follow from the table, checked
 * before the compiler runs, so that a mistake costs no compile:
 *
 *   1. A name whose extension belongs to another kind is an error (--emit=asm -o m.o,
 *      -o m.h for the library); a name with no extension, or one the table does not
 *      know, is taken as given (-o model, -o libnet.so.1).
 *   2. Binary output (an object file, a NumPy array, ...) is never written to a
 *      terminal: with no -o, or -o -, standard output must be a file or a pipe.
 *   3. `-o -` is standard output where the kind can go there; the library cannot (it is
 *      two files, NAME.so and NAME.h, and is loaded by name).
 *
 * The file itself is written to a temporary file beside PATH and renamed into place
 * once complete, so that an error or a kill never leaves half a file under PATH, and an
 * old file stays as it was. A PATH that exists and is not a regular file (/dev/null, a
 * FIFO, /dev/stdout) is written in place: renaming over it would replace the device. */
#include "driver/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const OutputKind out_kinds[] = {
    /* kind          what                                  extensions      binary  stdout */
    {"check", "the models' summaries", ".txt", false, true},
    {"mem-report", "the memory plan", ".txt", false, true},
    {"tokens", "the token list", ".txt", false, true},
    {"ast", "the syntax tree", ".txt", false, true},
    {"ir", "IR text", ".ir", false, true},
    {"grad-ir", "IR text", ".ir", false, true},
    {"opt-ir", "the kernel plan", ".ir .txt", false, true},
    {"dot", "a Graphviz graph", ".dot .gv", false, true},
    {"llvm", "LLVM IR text", ".ll", false, true},
    {"asm", "assembly", ".s .S", false, true},
    {"obj", "an ELF object file", ".o", true, true},
    {"library", "a shared library", ".so", true, false},
    /* other commands' outputs (predict, plot, train --save, --log) */
    {"npy", "a NumPy array", ".npy", true, true},
    {"csv", "a CSV table", ".csv", false, true},
    {"svg", "an SVG image", ".svg", false, true},
    {"safetensors", "a safetensors checkpoint", ".safetensors", true, false},
    /* never an output: names of inputs and of files bpcc does not write */
    {"source", "a .bp program", ".bp", false, false},
    {"header", "a C header (the library writes NAME.h itself)", ".h", false, false},
    {"c", "C source", ".c", false, false},
    {"bitcode", "LLVM bitcode (bpcc writes text IR: --emit=llvm -o NAME.ll)", ".bc", true, false},
    {"archive", "a static library", ".a", true, false},
    {NULL, NULL, NULL, false, false},
};

const OutputKind *out_kind(const char *kind) {
  for (const OutputKind *k = out_kinds; k->kind; k++)
    if (!strcmp(k->kind, kind)) return k;
  ir_die("unknown output kind '%s'", kind);
}

/* Whether ext (".s") is one of the space-separated extensions of k. */
static bool has_ext(const OutputKind *k, const char *ext) {
  size_t n = strlen(ext);
  for (const char *p = k->exts; *p;) {
    size_t len = strcspn(p, " ");
    if (len == n && !strncmp(p, ext, n)) return true;
    p += len;
    p += *p == ' ';
  }
  return false;
}

/* The extension of the file name: ".s" of "out/m.s"; "" for "m", ".hidden" and "dir.d/m". */
static const char *extension(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  return dot && dot != base ? dot : "";
}

/* path NULL: standard output */
static bool to_terminal_error(const OutputKind *k, const char *path) {
  int n = (int)strcspn(k->exts, " ");
  if (path)
    fprintf(stderr, "bpcc: error: -o %s: not writing %s to a terminal; give -o FILE%.*s\n", path, k->what, n, k->exts);
  else
    fprintf(stderr, "bpcc: error: not writing %s to a terminal: give -o FILE%.*s, or redirect standard output to a "
                    "file or pipe\n", k->what, n, k->exts);
  return false;
}

bool out_check(const char *kind, const char *path, const char *for_what) {
  const OutputKind *k = out_kind(kind);
  size_t n = strcspn(k->exts, " ");
  if (!path || !strcmp(path, "-")) {
    if (!k->to_stdout) {
      fprintf(stderr, "bpcc: error: -o -: %s cannot go to standard output; give -o FILE%.*s\n", k->what, (int)n, k->exts);
      return false;
    }
    if (k->binary && isatty(STDOUT_FILENO)) return to_terminal_error(k, NULL);
    return true;
  }
  if (!*path) {
    fprintf(stderr, "bpcc: error: -o '': an empty file name\n");
    return false;
  }
  const char *ext = extension(path);
  if (*ext && !has_ext(k, ext))
    for (const OutputKind *o = out_kinds; o->kind; o++)
      if (has_ext(o, ext)) {
        fprintf(stderr, "bpcc: error: -o %s: '%s' is the extension of %s, but %s writes %s (%.*s)\n", path, ext, o->what,
                for_what, k->what, (int)n, k->exts);
        return false;
      }
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "bpcc: error: -o %s: is a directory\n", path);
      return false;
    }
    if (k->binary && S_ISCHR(st.st_mode)) {
      int fd = open(path, O_WRONLY | O_NOCTTY);
      bool tty = fd >= 0 && isatty(fd);
      if (fd >= 0) close(fd);
      if (tty) return to_terminal_error(k, path);
    }
  }
  return true;
}

/* A unique empty file ".BASE.tmp-XXXXXX" beside path (NULL and errno on failure). */
static char *temp_beside(const char *path, int *fd) {
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
  size_t n = strlen(path) + 16;
  char *t = bp_xmalloc(n);
  snprintf(t, n, "%.*s.%s.tmp-XXXXXX", (int)dirlen, path, path + dirlen);
  *fd = mkstemp(t);
  if (*fd < 0) {
    bp_free(t);
    return NULL;
  }
  return t;
}

bool out_open(DrvOutput *o, const char *path) {
  memset(o, 0, sizeof *o);
  o->path = path;
  if (!path || !strcmp(path, "-")) {
    o->f = stdout;
    return true;
  }
  struct stat st;
  int fd;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {   /* a device or FIFO: in place */
    fd = open(path, O_WRONLY | O_NOCTTY);
  } else {
    o->tmp = temp_beside(path, &fd);
    if (o->tmp) {   /* mkstemp makes 0600: the mode a new file would have had */
      mode_t mask = umask(0);
      umask(mask);
      fchmod(fd, 0666 & ~mask);
    }
  }
  if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
    fprintf(stderr, "bpcc: error: cannot write %s: %s\n", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (o->tmp) unlink(o->tmp);
    bp_free(o->tmp);
    o->tmp = NULL;
    return false;
  }
  return true;
}

bool out_close(DrvOutput *o, bool ok) {
  if (!o->f) return false;
  const char *name = o->f == stdout ? "standard output" : o->path;
  bool written = fflush(o->f) == 0 && !ferror(o->f);
  if (ok && !written) fprintf(stderr, "bpcc: error: cannot write %s: %s\n", name, strerror(errno));
  ok = ok && written;
  if (o->f != stdout) {
    if (ok && o->tmp && fsync(fileno(o->f)) != 0) {
      fprintf(stderr, "bpcc: error: cannot write %s: %s\n", name, strerror(errno));
      ok = false;
    }
    if (fclose(o->f) != 0 && ok) {
      fprintf(stderr, "bpcc: error: cannot write %s: %s\n", name, strerror(errno));
      ok = false;
    }
    if (o->tmp) {
      if (ok && rename(o->tmp, o->path) != 0) {
        fprintf(stderr, "bpcc: error: cannot write %s: renaming %s: %s\n", o->path, o->tmp, strerror(errno));
        ok = false;
      }
      if (!ok) unlink(o->tmp);
      bp_free(o->tmp);
    }
  }
  memset(o, 0, sizeof *o);
  return ok;
}
