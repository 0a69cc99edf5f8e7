# cmake/install.cmake — `make install` (cmake --install; PREFIX, DESTDIR):
#   bin/bpcc                           the compiler: self-contained (the standard library
#                                      .bp and the runtime it links into libraries are
#                                      compiled in), needs only libLLVM, libz and libc
#   share/man/man1/bpcc.1              the manual page
#   share/doc/bpcc/                    README.md, docs/*.md, examples/: the source tree's
#                                      layout, so that README's links work
#   share/bpcc/cmake/                  find_package(bpcc): bpcc::bpcc, bpcc_add_model()
# A model's library needs nothing installed: it holds the runtime (docs/abi.md).
include(CMakePackageConfigHelpers)
install(TARGETS bpcc RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/bpcc.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
file(GLOB _bpcc_docs ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${_bpcc_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(BPCC_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/bpcc/cmake)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/bpcc-config.cmake.in
  ${PROJECT_BINARY_DIR}/bpcc-config.cmake
  INSTALL_DESTINATION ${BPCC_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_BINDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/bpcc-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/bpcc-config.cmake ${PROJECT_BINARY_DIR}/bpcc-config-version.cmake
  ${PROJECT_SOURCE_DIR}/cmake/bpcc-functions.cmake
  DESTINATION ${BPCC_CMAKE_DIR})
