# embed.cmake — turn stdlib.bp into a C array (cmake -DIN=... -DOUT=... -P embed.cmake).
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from frontend/stdlib.bp by frontend/embed.cmake */\n"
  "#include \"frontend/frontend.h\"\n"
  "const char fe_stdlib_text[] = {${bytes} 0};\n"
  "const size_t fe_stdlib_len = sizeof fe_stdlib_text - 1;\n")
