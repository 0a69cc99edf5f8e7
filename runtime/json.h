/* runtime/json.h — a tiny JSON reader (internal to the runtime).
 *
 * Just enough for safetensors headers: a DOM of objects, arrays, strings, numbers,
 * booleans and null, every node tagged with its byte offset so errors can point into
 * the file. Integers without a fraction or exponent are also kept exactly (offsets can
 * exceed 2^53). Strings are NUL-terminated UTF-8 (\u0000 is refused). Nesting is
 * limited to 64 levels so hostile input cannot overflow the stack. */
#ifndef BPCC_RUNTIME_JSON_H
#define BPCC_RUNTIME_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonKind;

typedef struct JsonValue {
  JsonKind kind;
  size_t pos;                 /* byte offset of the value in the text */
  bool boolean;
  double number;
  bool is_int;                /* a number written as an integer that fits int64 */
  int64_t integer;
  char *string;               /* JSON_STRING */
  int n;                      /* JSON_ARRAY / JSON_OBJECT: number of items */
  struct JsonValue *items;    /* n values */
  char **keys;                /* JSON_OBJECT: n keys, in file order */
  size_t *keypos;             /* JSON_OBJECT: byte offset of each key */
} JsonValue;

/* Parse text[0..len) as one JSON value (surrounding whitespace allowed). On error:
 * NULL, a message in err ("expected ':' after object key") and its byte offset in
 * *errpos. Out of memory is an error like any other. */
JsonValue *json_parse(const char *text, size_t len, char *err, size_t errlen, size_t *errpos);
/* Free a tree json_parse returned (its root only: every node of it goes at once). */
void json_free(JsonValue *v);
/* The value of `key` in an object, or NULL. */
const JsonValue *json_get(const JsonValue *obj, const char *key);
const char *json_kind_name(JsonKind k);

#endif
