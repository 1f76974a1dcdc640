# SPDX-License-Identifier: Apache-2.0
# mp_add_plugin(<name> SOURCES a.cpp b.cpp [OUTPUT_DIRECTORY dir])
# Builds lib mp-<name>.so: hidden visibility (only the entry symbol is exported), no
# undefined symbols, linked against mp::sdk. <name> is the kebab-case plugin name.
function(mp_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE mp::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "mp-${name}"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(NOT CMAKE_SYSTEM_NAME STREQUAL "Darwin")
    # -z defs catches a missing library at link time; sanitizer runtimes are resolved at load.
    if(NOT MP_SANITIZERS)
      target_link_options(${name} PRIVATE "LINKER:-z,defs")
    endif()
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
