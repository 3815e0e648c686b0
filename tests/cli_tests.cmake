# Command-line tests: shell scripts that run the real pstrain binary (tests/cli/), each
# given the binary, the source tree, the bsp_reference program and the hostile_client.
# Exit code 77 means "skipped" (e.g. the dataset package is absent) and is reported so.
foreach(t cli_basics default_job examples bad_data signals local_supervision
          dist_bsp dist_async dist_staleness dist_manual dist_bad_peer eval_predict
          finetune resume mpi k8s_manifests tf_config cluster_netns plot metrics_files progress
          faults worker_failure server_failure metrics_endpoint status auth ckpt_crash
          network_cut coordinator_loss cluster_restart stop retriable_end detect sparse_train
          data_prep run_folder sparse_dist)
  add_test(NAME test_${t}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_${t}.sh $<TARGET_FILE:pstrain>
                   ${CMAKE_SOURCE_DIR} $<TARGET_FILE:bsp_reference>
                   $<TARGET_FILE:hostile_client>)
  set_tests_properties(test_${t} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
endforeach()

# The container image built and run for real (podman): label "container", which CI runs
# once (scripts/test.sh leaves it out of the sanitizer pass). Skips (77) without podman.
add_test(NAME test_container
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_container.sh $<TARGET_FILE:pstrain>
                 ${CMAKE_SOURCE_DIR})
set_tests_properties(test_container PROPERTIES TIMEOUT 1200 SKIP_RETURN_CODE 77
                     LABELS container)
