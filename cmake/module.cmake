# cmake/module.cmake -- one static library per module, and the include rule that goes with it.
#
# pst_module(NAME SOURCES src... DEPS lib...) builds pst_NAME from the module's folder. Its
# headers are reachable as "NAME/x.h" only through the include directory
# <build>/include/NAME, which holds one link NAME -> the module's folder and is PUBLIC on
# pst_NAME: code sees a module's headers only when it links that module, directly or
# through a module above it. A wrong-way include (core/ including "net/net.h") then fails
# to compile; `ctest -L layering` (tests/check_layering.py) checks the finer table of
# docs/architecture.md.
function(pst_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  set(inc ${CMAKE_BINARY_DIR}/include/${name})
  file(MAKE_DIRECTORY ${inc})
  if(NOT EXISTS ${inc}/${name})
    file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR} ${inc}/${name} SYMBOLIC)
  endif()
  add_library(pst_${name} STATIC ${M_SOURCES})
  target_include_directories(pst_${name} PUBLIC ${inc})
  target_link_libraries(pst_${name} PUBLIC ${M_DEPS})
endfunction()
