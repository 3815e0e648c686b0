# cmake/cpu_slots.cmake -- ctest's resource "cpu" (scripts/test.sh): every test of the
# calling directory takes one slot of it, except those labelled "container". The container
# test spends most of a cold run waiting on the Debian archive and podman, not on these
# cores: scripts/test.sh runs ctest with one job more than there are slots (cores), so it
# runs beside as many other tests as there are cores instead of taking one of them. Without
# --resource-spec-file (a plain `ctest -j2`) ctest ignores the property.
function(pst_cpu_slots)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t ${tests})
    get_test_property(${t} LABELS labels)
    if(NOT "container" IN_LIST labels)
      set_tests_properties(${t} PROPERTIES RESOURCE_GROUPS "cpu:1")
    endif()
  endforeach()
endfunction()
