/* driver/outfile.c — where output goes, and files written whole or not at all.
 *
 * Every output has a kind, and the kinds are one table (out_kinds[] below, listed in
 * docs/cli.md): what it is, the extensions its file takes, whether it is binary and
 * whether standard output can take it. out_check applies it before the work, so that
 * a mistake costs no compile:
 *
 *   1. A name whose extension belongs to another kind is an error (--emit=asm -o m.o,
 *      -o m.h for the library); a name with no extension, or one the table does not
 *      know, is taken as given (-o model, -o libnet.so.1).
 *   2. Binary output (an object file, a NumPy array, ...) is never written to a
 *      terminal: with no -o, or -o -, standard output must be a file or a pipe.
 *   3. `-o -` is standard output where the kind can go there; the library cannot (it is
 *      two files, NAME.so and NAME.h, and is loaded by name).
 *
 * A command that writes a result (predict's NPY or CSV, plot's SVG) opens it here
 * before it computes anything, so that an unwritable path is an error before the work,
 * not after it; --check, --emit and --mem-report open it once the pipeline succeeded,
 * so that a program with errors writes nothing. The bytes go to PATH.tmp-PID-N beside PATH; outfile_commit flushes,
 * fsyncs and renames it over PATH, so a reader never sees half a file and an old PATH
 * stays as it was when the command fails or is killed. Two cases are written straight:
 * "-" (standard output) and a path that exists and is not a regular file (/dev/null, a
 * FIFO), which a rename would replace instead of writing to. Binary output is never
 * written to a terminal. */
#include "driver/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const OutputKind out_kinds[] = {
    /* kind, what it is, its extensions, binary, may go to standard output */
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

bool outfile_open(OutFile *o, const char *path, bool binary, const char *what) {
  memset(o, 0, sizeof *o);
  o->path = path;
  if (strcmp(path, "-") == 0) {
    if (binary && isatty(STDOUT_FILENO)) {
      fprintf(stderr, "bpcc: error: %s is binary and standard output is a terminal: redirect it, or give -o FILE\n", what);
      return false;
    }
    o->f = stdout;
    return true;
  }
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "bpcc: error: %s: is a directory; -o names the file to write\n", path);
      return false;
    }
    o->f = fopen(path, "w");
    if (!o->f) {
      fprintf(stderr, "bpcc: error: %s: cannot open for writing: %s\n", path, strerror(errno));
      return false;
    }
    if (binary && isatty(fileno(o->f))) {
      fprintf(stderr, "bpcc: error: %s: %s is binary and this is a terminal\n", path, what);
      fclose(o->f);
      o->f = NULL;
      return false;
    }
    return true;
  }
  static unsigned counter;
  size_t n = strlen(path) + 48;
  o->tmp = malloc(n);
  if (!o->tmp) {
    fprintf(stderr, "bpcc: error: %s: out of memory\n", path);
    return false;
  }
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(o->tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
    fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
    fprintf(stderr, "bpcc: error: %s: cannot create a file beside it to write to: %s\n", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(o->tmp);
    }
    free(o->tmp);
    o->tmp = NULL;
    return false;
  }
  return true;
}

bool outfile_commit(OutFile *o) {
  if (!o->f) return false;
  bool ok = fflush(o->f) == 0 && !ferror(o->f);
  int err = errno;
  if (o->f == stdout) {
    o->f = NULL;
    if (!ok) fprintf(stderr, "bpcc: error: standard output: write error: %s\n", strerror(err));
    return ok;
  }
  if (ok && o->tmp && fsync(fileno(o->f)) != 0) ok = false, err = errno;
  if (fclose(o->f) != 0 && ok) ok = false, err = errno;
  o->f = NULL;
  if (ok && o->tmp && rename(o->tmp, o->path) != 0) ok = false, err = errno;
  if (!ok) fprintf(stderr, "bpcc: error: %s: write error: %s%s\n", o->path, strerror(err),
                   o->tmp ? "; any previous file is unchanged" : "");
  if (!ok && o->tmp) unlink(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
  return ok;
}

void outfile_abort(OutFile *o) {
  if (o->f && o->f != stdout) fclose(o->f);
  else if (o->f) fflush(o->f);
  o->f = NULL;
  if (o->tmp) {
    unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
  }
}
