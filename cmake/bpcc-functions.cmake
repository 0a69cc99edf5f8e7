# bpcc-functions.cmake — bpcc_add_model() for CMake projects that embed a bpcc model.
# Included by bpcc-config.cmake (find_package(bpcc), an installed bpcc) and by bpcc's
# own build (examples/embed), where bpcc::bpcc is the bpcc being built.
#
#   bpcc_add_model(NAME FILE.bp [OPTIONS option...])
#
# compiles FILE.bp at build time with `bpcc FILE.bp -o NAME.so [options]` into
# ${CMAKE_CURRENT_BINARY_DIR}/bpcc/NAME/ (NAME.so and its header NAME.h), and makes NAME
# an imported shared library to link: target_link_libraries(app PRIVATE NAME) gives the
# header's directory and the library, and the model is remade when FILE.bp or bpcc
# changes. OPTIONS are bpcc's (-march=x86-64-v3 for a library to distribute, --model
# M, -O2, ...). The library is self-contained (libc, libm, libpthread). Its soname is
# NAME.so: the program finds it through its RUNPATH, which CMake sets to the build
# directory; to install the program, install the library beside it and give the
# program the RUNPATH $ORIGIN:
#
#   set_target_properties(app PROPERTIES INSTALL_RPATH "$ORIGIN")
#   install(TARGETS app DESTINATION bin)
#   install(IMPORTED_RUNTIME_ARTIFACTS NAME DESTINATION bin)
include_guard(GLOBAL)

function(bpcc_add_model name file)
  cmake_parse_arguments(PARSE_ARGV 2 BPCC "" "" "OPTIONS")
  if(BPCC_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "bpcc_add_model(${name} ${file}): unknown arguments ${BPCC_UNPARSED_ARGUMENTS} "
                        "(bpcc's options go after OPTIONS)")
  endif()
  if(NOT TARGET bpcc::bpcc)
    message(FATAL_ERROR "bpcc_add_model: no bpcc::bpcc target; call find_package(bpcc REQUIRED) first")
  endif()
  get_filename_component(src "${file}" ABSOLUTE)
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/bpcc/${name}")
  file(MAKE_DIRECTORY "${dir}")   # an imported target's include directory must exist
  add_custom_command(OUTPUT "${dir}/${name}.so" "${dir}/${name}.h"
    COMMAND bpcc::bpcc "${src}" -o "${dir}/${name}.so" ${BPCC_OPTIONS}
    DEPENDS "${src}" bpcc::bpcc
    COMMENT "bpcc ${file} -o ${name}.so"
    VERBATIM)
  add_custom_target(${name}_bpcc DEPENDS "${dir}/${name}.so" "${dir}/${name}.h")
  add_library(${name} SHARED IMPORTED GLOBAL)
  set_target_properties(${name} PROPERTIES
    IMPORTED_LOCATION "${dir}/${name}.so"
    IMPORTED_SONAME "${name}.so"
    INTERFACE_INCLUDE_DIRECTORIES "${dir}"
    INTERFACE_LINK_LIBRARIES m)
  add_dependencies(${name} ${name}_bpcc)
endfunction()
