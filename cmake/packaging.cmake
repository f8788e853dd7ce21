# packaging.cmake - what the skipq command brings to an operating system
# (man pages, shell completions, systemd units, an example config), and
# the Debian packages (CPack):
#
#   libskipq0      component lib: the shared library
#   libskipq-dev   component dev: headers, skipq.pc, the CMake package,
#                  the static library
#   skipq          component cli: the command, its man pages, completions,
#                  systemd units, /usr/share/doc/skipq/skipq.yaml.example
#
#   cmake --build build --target package      -> build/*.deb
#
# Included by the top CMakeLists.txt after the library and cli/.

# ---- man pages, made from the --help texts at build time -------------------
# scripts/man.sh runs the built command (`skipq CMD --help` for each command
# of cli/main.c's dispatch table) and turns config.example.yaml into
# skipq.yaml(5): a changed help text is a changed page, and a command added
# to the table gets its page with no change here.
if(SKIPQ_CLI AND NOT CMAKE_CROSSCOMPILING)
  set(SKIPQ_MAN_DIR ${PROJECT_BINARY_DIR}/man)
  add_custom_command(
    OUTPUT ${SKIPQ_MAN_DIR}/skipq.1
    # an ASan build's command runs here too: a leak report at exit must not
    # fail the build (the test suites look for leaks)
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
            sh ${PROJECT_SOURCE_DIR}/scripts/man.sh $<TARGET_FILE:skipq>
            ${PROJECT_SOURCE_DIR}/cli/main.c ${PROJECT_SOURCE_DIR}/config.example.yaml
            ${SKIPQ_MAN_DIR} ${PROJECT_VERSION}
    DEPENDS skipq ${PROJECT_SOURCE_DIR}/scripts/man.sh ${PROJECT_SOURCE_DIR}/cli/main.c
            ${PROJECT_SOURCE_DIR}/config.example.yaml
    COMMENT "Writing the man pages from skipq --help (scripts/man.sh)"
    VERBATIM)
  add_custom_target(skipq_man ALL DEPENDS ${SKIPQ_MAN_DIR}/skipq.1)
endif()

if(NOT (SKIPQ_INSTALL AND SKIPQ_TOP_LEVEL))
  return()
endif()

# ---- what the command installs besides itself (component cli) ------------
set(dist ${PROJECT_SOURCE_DIR}/dist)
if(SKIPQ_CLI)
  if(SKIPQ_MAN_DIR)
    install(DIRECTORY ${SKIPQ_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
            COMPONENT cli FILES_MATCHING PATTERN "*.1")
    install(DIRECTORY ${SKIPQ_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man5
            COMPONENT cli FILES_MATCHING PATTERN "*.5")
  endif()
  install(FILES ${dist}/completions/skipq.bash RENAME skipq
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT cli)
  install(FILES ${dist}/completions/_skipq
          DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions COMPONENT cli)
  # lib/systemd/system under the prefix: /usr/lib/systemd/system from the
  # package, /usr/local/lib/systemd/system from a `cmake --install`; systemd
  # reads both. The units name the command without a directory, so one
  # file serves either prefix.
  install(FILES ${dist}/systemd/skipq-worker@.service ${dist}/systemd/skipq-serve.service
          DESTINATION lib/systemd/system COMPONENT cli)
  install(FILES ${PROJECT_SOURCE_DIR}/config.example.yaml RENAME skipq.yaml.example
          DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT cli)
endif()

# ---- Debian packages --------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME skipq)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR skipq)
set(CPACK_PACKAGE_CONTACT "skipq maintainers <maintainers@users.noreply.b-seed-c5f0bc7b.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "background job queue that needs nothing but PostgreSQL")
set(CPACK_STRIP_FILES ON)
# One package per component, each named as Debian names such things; the
# architecture is dpkg's (dpkg --print-architecture).
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL lib dev cli)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the ELF files themselves (dpkg-shlibdeps, from dpkg-dev):
# libpq5, libpqtypes0, libjson-c5, libyaml-0-2, libmicrohttpd12 and
# whatever a future link adds, with the versions the build saw.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libskipq0 gets a shlibs file (and the ldconfig trigger) for packages
# built against it
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libskipq0)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
string(CONCAT CPACK_DEBIAN_LIB_DESCRIPTION
    "background job queue that needs nothing but PostgreSQL - library\n"
    "libskipq enqueues jobs into, and runs them from, a PostgreSQL\n"
    "database: SKIP LOCKED claims, retries with backoff, leases, schedules.\n"
    "This package holds the shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libskipq-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE_DEPENDENT ON)
# Depends: libskipq0 (= version), from the component dependency; then what
# skipq.pc and skipqConfig.cmake name (libpq, json-c, libyaml), and
# libpqtypes for the static library
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libpq-dev, libjson-c-dev, libyaml-dev, libpqtypes-dev, pkg-config")
string(CONCAT CPACK_DEBIAN_DEV_DESCRIPTION
    "background job queue that needs nothing but PostgreSQL - development files\n"
    "The header skipq.h (and skipq_json.h), skipq.pc for pkg-config, the\n"
    "CMake package for find_package(skipq) and the static library.")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME skipq)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION misc)
# adduser for postinst; the command links libskipq statically
set(CPACK_DEBIAN_CLI_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_CLI_PACKAGE_SUGGESTS "postgresql")
set(CPACK_DEBIAN_CLI_PACKAGE_CONTROL_EXTRA
    ${dist}/debian/skipq/postinst ${dist}/debian/skipq/prerm ${dist}/debian/skipq/postrm)
set(CPACK_DEBIAN_CLI_PACKAGE_CONTROL_STRICT_PERMISSION ON)
string(CONCAT CPACK_DEBIAN_CLI_DESCRIPTION
    "background job queue that needs nothing but PostgreSQL - command\n"
    "The skipq command: migrate the schema, enqueue and inspect jobs, run\n"
    "workers (skipq-worker@NAME.service, /etc/skipq/NAME.yaml), schedules\n"
    "and queue limits. Man pages skipq(1), skipq-CMD(1), skipq.yaml(5) and\n"
    "bash and zsh completion are included. Nothing is started on install.")

# A test build (scripts/test.sh) has failpoints compiled in, which no
# shipped library may carry: packaging one says so (the packages are fine
# for scripts/package.sh, which installs them and removes them again).
set(CPACK_SKIPQ_FAILPOINTS ${SKIPQ_FAILPOINTS})
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_SOURCE_DIR}/cmake/cpack_project.cmake)
include(CPack)
