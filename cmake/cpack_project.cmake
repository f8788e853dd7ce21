# cpack_project.cmake - read by cpack when it runs (CPACK_PROJECT_CONFIG_FILE)
if(CPACK_SKIPQ_FAILPOINTS)
  message(WARNING "this build has SKIPQ_FAILPOINTS=ON: test packages only, not for "
                  "release (configure a build without it to ship: docs/building.md)")
endif()
