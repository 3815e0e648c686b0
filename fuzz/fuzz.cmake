# fuzz/fuzz.cmake -- the libFuzzer harnesses (included when PSTRAIN_FUZZ=ON; see
# docs/fuzzing.md). Each is a ctest test labelled "fuzz" that runs for a bounded time over
# a scratch copy of its seed corpus in fuzz/corpus/<name> (fuzz/run_fuzz.sh); a crash
# fails the test and leaves the input in <build>/fuzz-artifacts/.
set(PSTRAIN_FUZZ_SECONDS 4 CACHE STRING "Seconds each fuzz ctest test runs")
set(pst_fuzz_harnesses fuzz_wire fuzz_idx fuzz_csv fuzz_libsvm fuzz_sparse fuzz_hashed
    fuzz_config fuzz_ckpt fuzz_tok)
foreach(h ${pst_fuzz_harnesses})
  add_executable(${h} fuzz/${h}.c)
  target_compile_options(${h} PRIVATE -fsanitize=fuzzer)
  target_link_options(${h} PRIVATE -fsanitize=fuzzer)
  target_include_directories(${h} PRIVATE ${CMAKE_SOURCE_DIR})
  if(h STREQUAL "fuzz_wire")
    target_link_libraries(${h} PRIVATE pst_proto)
  elseif(h STREQUAL "fuzz_config")
    target_link_libraries(${h} PRIVATE pst_job)
  elseif(h STREQUAL "fuzz_ckpt")
    target_link_libraries(${h} PRIVATE pst_ckpt)
  elseif(h STREQUAL "fuzz_tok")
    target_link_libraries(${h} PRIVATE pst_tok)
  else()
    target_link_libraries(${h} PRIVATE pst_data) # fuzz_idx, fuzz_csv, fuzz_libsvm, fuzz_sparse, fuzz_hashed
  endif()
  add_test(NAME ${h}
           COMMAND bash ${CMAKE_SOURCE_DIR}/fuzz/run_fuzz.sh $<TARGET_FILE:${h}>
                   ${CMAKE_SOURCE_DIR}/fuzz ${PSTRAIN_FUZZ_SECONDS}
                   ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  set_tests_properties(${h} PROPERTIES LABELS fuzz TIMEOUT 300)
endforeach()
# Seed writer for fuzz_wire (fuzz/make_corpus.sh).
add_executable(make_corpus_wire fuzz/make_corpus_wire.c)
target_link_libraries(make_corpus_wire PRIVATE pst_proto)
target_include_directories(make_corpus_wire PRIVATE ${CMAKE_SOURCE_DIR})
add_custom_target(fuzz DEPENDS ${pst_fuzz_harnesses} make_corpus_wire)
