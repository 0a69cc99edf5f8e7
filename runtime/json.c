/* runtime/json.c — a recursive-descent JSON reader (RFC 8259) for safetensors headers.
 *
 * Grammar, one function each:
 *   value  = object | array | string | number | "true" | "false" | "null"
 *   object = '{' [ string ':' value { ',' string ':' value } ] '}'
 *   array  = '[' [ value { ',' value } ] ']'
 * The first error stops the parse; its message and offset go back to the caller. */
#include "runtime/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#define JSON_MAX_DEPTH 64

/* Every node, string and array of one parse comes from a list of chunks freed at once:
 * a header of 100,000 tensors is a million small pieces, and freeing them one by one
 * cost more than parsing them. A growing array leaves its old copies behind (less
 * than the final size in all). */
typedef struct Chunk {
  struct Chunk *next;
  size_t used, cap;
  max_align_t data[];
} Chunk;

typedef struct {
  JsonValue root;             /* first: json_free gets this back from the root */
  Chunk *chunks;
} Doc;

typedef struct {
  const char *s;
  size_t len, pos;
  char *err;
  size_t errlen;
  size_t errpos;
  bool failed;
  Doc *doc;
} Parser;

/* n bytes (16-aligned) from the parse's chunks; NULL when out of memory. */
static void *jalloc(Parser *p, size_t n) {
  n = (n + 15) & ~(size_t)15;
  Chunk *c = p->doc->chunks;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > (64u << 10) ? n : (64u << 10);
    c = bprt_malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = p->doc->chunks;
    p->doc->chunks = c;
  }
  void *r = (char *)c->data + c->used;
  c->used += n;
  return r;
}

static bool fail(Parser *p, size_t pos, const char *msg) {
  if (!p->failed) {
    p->failed = true;
    p->errpos = pos;
    snprintf(p->err, p->errlen, "%s", msg);
  }
  return false;
}

static void skip_ws(Parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int peek(Parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

void json_free(JsonValue *v) {
  if (!v) return;
  Doc *d = (Doc *)v;
  for (Chunk *c = d->chunks, *next; c; c = next) {
    next = c->next;
    bprt_free(c);
  }
  bprt_free(d);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at p->pos; -1 if malformed. */
static long hex4(Parser *p) {
  if (p->len - p->pos < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)p->s[p->pos + (size_t)i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  p->pos += 4;
  return v;
}

/* string = '"' { char | escape } '"' ; into a new NUL-terminated buffer. */
static char *parse_string(Parser *p) {
  size_t start = p->pos;
  if (peek(p) != '"') {
    fail(p, p->pos, "expected a string");
    return NULL;
  }
  p->pos++;
  /* The decoded string is never longer than the source text. */
  size_t cap = 1, scan = p->pos;
  while (scan < p->len && p->s[scan] != '"') {
    if (p->s[scan] == '\\') scan++;
    scan++;
  }
  cap += scan - p->pos;
  char *out = jalloc(p, cap);
  if (!out) {
    fail(p, start, "out of memory");
    return NULL;
  }
  size_t n = 0;
  for (;;) {
    if (p->pos >= p->len) {
      fail(p, start, "unterminated string");
      break;
    }
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      out[n] = 0;
      return out;
    }
    if (c < 0x20) {
      fail(p, p->pos, "control character in string");
      break;
    }
    if (c != '\\') {
      out[n++] = (char)c;
      p->pos++;
      continue;
    }
    size_t esc = p->pos++;
    int e = peek(p);
    p->pos++;
    switch (e) {
    case '"': out[n++] = '"'; continue;
    case '\\': out[n++] = '\\'; continue;
    case '/': out[n++] = '/'; continue;
    case 'b': out[n++] = '\b'; continue;
    case 'f': out[n++] = '\f'; continue;
    case 'n': out[n++] = '\n'; continue;
    case 'r': out[n++] = '\r'; continue;
    case 't': out[n++] = '\t'; continue;
    case 'u': {
      long cp = hex4(p);
      if (cp < 0) {
        fail(p, esc, "bad \\u escape");
        goto error;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {  /* a surrogate pair */
        long lo = -1;
        if (p->len - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
          p->pos += 2;
          lo = hex4(p);
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
          fail(p, esc, "unpaired surrogate in \\u escape");
          goto error;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail(p, esc, "unpaired surrogate in \\u escape");
        goto error;
      }
      if (cp == 0) {
        fail(p, esc, "\\u0000 in a string is not supported");
        goto error;
      }
      /* UTF-8; at most 4 bytes, and the escape took at least 6 source bytes. */
      if (cp < 0x80) {
        out[n++] = (char)cp;
      } else if (cp < 0x800) {
        out[n++] = (char)(0xC0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out[n++] = (char)(0xE0 | (cp >> 12));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else {
        out[n++] = (char)(0xF0 | (cp >> 18));
        out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      }
      continue;
    }
    default:
      fail(p, esc, "bad escape in string");
      goto error;
    }
  }
error:
  return NULL;
}

/* number = [ '-' ] int [ frac ] [ exp ] */
static bool parse_number(Parser *p, JsonValue *v) {
  size_t start = p->pos;
  bool neg = false, integral = true, overflow = false;
  uint64_t mag = 0;
  if (peek(p) == '-') {
    neg = true;
    p->pos++;
  }
  if (peek(p) < '0' || peek(p) > '9') return fail(p, start, "expected a value");
  if (peek(p) == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
    return fail(p, start, "leading zero in number");
  while (peek(p) >= '0' && peek(p) <= '9') {
    unsigned d = (unsigned)(peek(p) - '0');
    if (mag > (UINT64_MAX - d) / 10) overflow = true;
    else mag = mag * 10 + d;
    p->pos++;
  }
  if (peek(p) == '.') {
    integral = false;
    p->pos++;
    if (peek(p) < '0' || peek(p) > '9') return fail(p, p->pos, "expected a digit after '.'");
    while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
  }
  if (peek(p) == 'e' || peek(p) == 'E') {
    integral = false;
    p->pos++;
    if (peek(p) == '+' || peek(p) == '-') p->pos++;
    if (peek(p) < '0' || peek(p) > '9') return fail(p, p->pos, "expected a digit in exponent");
    while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
  }
  char buf[64];
  size_t n = p->pos - start;
  if (n >= sizeof buf) n = sizeof buf - 1;  /* long mantissas: strtod of a prefix is close */
  memcpy(buf, p->s + start, n);
  buf[n] = 0;
  v->kind = JSON_NUMBER;
  v->number = strtod(buf, NULL);
  if (integral && !overflow && mag <= (uint64_t)INT64_MAX) {
    v->is_int = true;
    v->integer = neg ? -(int64_t)mag : (int64_t)mag;
  }
  return true;
}

static bool parse_value(Parser *p, JsonValue *v, int depth);

/* Append a zeroed slot to an array or object node. */
static JsonValue *push(Parser *p, JsonValue *v, int *cap, bool keyed) {
  if (v->n == *cap) {
    int ncap = *cap ? *cap * 2 : 4;
    JsonValue *items = jalloc(p, sizeof *items * (size_t)ncap);
    if (!items) return fail(p, p->pos, "out of memory"), NULL;
    if (v->n) memcpy(items, v->items, sizeof *items * (size_t)v->n);
    v->items = items;
    if (keyed) {
      char **keys = jalloc(p, sizeof *keys * (size_t)ncap);
      size_t *kp = jalloc(p, sizeof *kp * (size_t)ncap);
      if (!keys || !kp) return fail(p, p->pos, "out of memory"), NULL;
      if (v->n) {
        memcpy(keys, v->keys, sizeof *keys * (size_t)v->n);
        memcpy(kp, v->keypos, sizeof *kp * (size_t)v->n);
      }
      v->keys = keys;
      v->keypos = kp;
    }
    *cap = ncap;
  }
  JsonValue *slot = &v->items[v->n];
  memset(slot, 0, sizeof *slot);
  if (keyed) v->keys[v->n] = NULL;
  v->n++;
  return slot;
}

static bool parse_container(Parser *p, JsonValue *v, int depth, bool object) {
  char close = object ? '}' : ']';
  v->kind = object ? JSON_OBJECT : JSON_ARRAY;
  p->pos++;
  int cap = 0;
  skip_ws(p);
  if (peek(p) == close) {
    p->pos++;
    return true;
  }
  for (;;) {
    skip_ws(p);
    JsonValue *slot;
    if (object) {
      size_t kpos = p->pos;
      if (peek(p) != '"') return fail(p, p->pos, "expected a string key");
      char *key = parse_string(p);
      if (!key) return false;
      if (!(slot = push(p, v, &cap, true))) return false;
      v->keys[v->n - 1] = key;
      v->keypos[v->n - 1] = kpos;
      skip_ws(p);
      if (peek(p) != ':') return fail(p, p->pos, "expected ':' after object key");
      p->pos++;
      skip_ws(p);
    } else if (!(slot = push(p, v, &cap, false))) {
      return false;
    }
    if (!parse_value(p, slot, depth + 1)) return false;
    skip_ws(p);
    if (peek(p) == ',') {
      p->pos++;
      continue;
    }
    if (peek(p) == close) {
      p->pos++;
      return true;
    }
    return fail(p, p->pos, object ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
  }
}

static bool parse_literal(Parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail(p, p->pos, "expected a value");
  p->pos += n;
  return true;
}

/* value = object | array | string | number | true | false | null */
static bool parse_value(Parser *p, JsonValue *v, int depth) {
  if (depth > JSON_MAX_DEPTH) return fail(p, p->pos, "nesting deeper than 64 levels");
  skip_ws(p);
  v->pos = p->pos;
  switch (peek(p)) {
  case -1: return fail(p, p->pos, "unexpected end of text");
  case '{': return parse_container(p, v, depth, true);
  case '[': return parse_container(p, v, depth, false);
  case '"':
    v->kind = JSON_STRING;
    v->string = parse_string(p);
    return v->string != NULL;
  case 't': v->kind = JSON_BOOL; v->boolean = true; return parse_literal(p, "true");
  case 'f': v->kind = JSON_BOOL; v->boolean = false; return parse_literal(p, "false");
  case 'n': v->kind = JSON_NULL; return parse_literal(p, "null");
  default: return parse_number(p, v);
  }
}

JsonValue *json_parse(const char *text, size_t len, char *err, size_t errlen, size_t *errpos) {
  Parser p = {text, len, 0, err, errlen, 0, false, NULL};
  p.doc = bprt_calloc(1, sizeof *p.doc);
  JsonValue *v = p.doc ? &p.doc->root : NULL;
  if (!v) {
    snprintf(err, errlen, "out of memory");
    *errpos = 0;
    return NULL;
  }
  if (parse_value(&p, v, 0)) {
    skip_ws(&p);
    if (p.pos != len) fail(&p, p.pos, "unexpected text after the JSON value");
  }
  if (p.failed) {
    json_free(v);
    *errpos = p.errpos;
    return NULL;
  }
  return v;
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
  if (!obj || obj->kind != JSON_OBJECT) return NULL;
  for (int i = 0; i < obj->n; i++)
    if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}

const char *json_kind_name(JsonKind k) {
  static const char *const names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
  return names[k];
}
