# codegen/aot.cmake — the runtime that `bpcc FILE.bp -o NAME.so` links into every library
# (codegen/aot.c). The runtime core's sources are built once more as a PIC archive,
# optimized and without sanitizers whatever the build type (a library bpcc writes must
# not need libasan), and the archive's bytes are compiled into bpcc as a C array, so
# that bpcc needs nothing of its build tree when it runs.
get_target_property(_bpcc_rt_srcs bpcc_runtime SOURCES)
add_library(bpcc_runtime_embed STATIC ${_bpcc_rt_srcs})
set_target_properties(bpcc_runtime_embed PROPERTIES POSITION_INDEPENDENT_CODE ON)
set_property(TARGET bpcc_runtime_embed PROPERTY COMPILE_OPTIONS ${BPCC_WARNINGS} -O2 -g0 -fno-sanitize=all)
# The runtime's thread-local error string: with TLS descriptors the dynamic linker
# resolves it without __tls_get_addr, so the libraries need no ld-linux NEEDED entry.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  target_compile_options(bpcc_runtime_embed PRIVATE -mtls-dialect=gnu2)
endif()
target_include_directories(bpcc_runtime_embed PRIVATE ${PROJECT_SOURCE_DIR})

set(_bpcc_blob ${CMAKE_CURRENT_BINARY_DIR}/runtime_archive.c)
add_custom_command(OUTPUT ${_bpcc_blob}
  COMMAND ${CMAKE_COMMAND} -DIN=$<TARGET_FILE:bpcc_runtime_embed> -DOUT=${_bpcc_blob}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/embed_archive.cmake
  DEPENDS bpcc_runtime_embed ${CMAKE_CURRENT_SOURCE_DIR}/embed_archive.cmake
  COMMENT "Embedding the runtime archive for shared libraries")
target_sources(bpcc_codegen PRIVATE ${_bpcc_blob})
