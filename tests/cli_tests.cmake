# Command-line tests: shell scripts that run the real pstrain binary (tests/cli/), each
# given the binary, the source tree, the bsp_reference program and the hostile_client.
# Exit code 77 means "skipped" (e.g. the dataset package is absent) and is reported so.
# CLI_ENV: what every script gets; in the sanitizer build also PSTRAIN_TEST_SANITIZED=1,
# which puts the Fashion-MNIST tests on a subset (tests/cli/lib.sh says why).
set(CLI_ENV "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
if(PSTRAIN_SANITIZE)
  list(APPEND CLI_ENV "PSTRAIN_TEST_SANITIZED=1")
endif()
foreach(t cli_basics default_job examples bad_data signals local_supervision
          dist_bsp dist_async dist_compress dist_staleness dist_manual dist_bad_peer eval_predict
          finetune resume mpi k8s_manifests tf_config cluster_netns plot metrics_files progress
          faults worker_failure server_failure metrics_endpoint status auth ckpt_crash
          network_cut coordinator_loss cluster_restart stop retriable_end detect sparse_train
          data_prep run_folder sparse_dist sparse_eval gpt_train gpt_example lora_finetune library
          augment_train server_same_port fence_manual explain model_compress bn_dist recsys_examples)
  add_test(NAME test_${t}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_${t}.sh $<TARGET_FILE:pstrain>
                   ${CMAKE_SOURCE_DIR} $<TARGET_FILE:bsp_reference>
                   $<TARGET_FILE:hostile_client>)
  set_tests_properties(test_${t} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "${CLI_ENV}")
endforeach()
# A hung server, a hung worker under `pstrain local` (one script, the role its last argument).
foreach(role server worker)
  add_test(NAME test_fence_${role}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_fence_local.sh $<TARGET_FILE:pstrain>
                   ${CMAKE_SOURCE_DIR} $<TARGET_FILE:bsp_reference>
                   $<TARGET_FILE:hostile_client> ${role})
  set_tests_properties(test_fence_${role} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "${CLI_ENV}")
endforeach()
# The manifests' check runs node, yamllint and Python on rendered YAML and pstrain only for
# --help: label "k8s", which the sanitizer pass leaves out with the other source-tree checks.
set_tests_properties(test_k8s_manifests PROPERTIES LABELS k8s)

# The container image built and run for real (podman): label "container", which CI runs
# once (scripts/test.sh leaves it out of the sanitizer pass). Skips (77) without podman.
add_test(NAME test_container
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_container.sh $<TARGET_FILE:pstrain>
                 ${CMAKE_SOURCE_DIR})
set_tests_properties(test_container PROPERTIES TIMEOUT 1200 SKIP_RETURN_CODE 77
                     LABELS container)

# pstrain export --format hf (tests/cli/test_hf_export.sh); its GPT-2 checkpoint comes from
# test_hf --pstrain.
add_test(NAME test_hf_export
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_hf_export.sh $<TARGET_FILE:pstrain>
                 ${CMAKE_SOURCE_DIR} $<TARGET_FILE:test_hf>)
set_tests_properties(test_hf_export PROPERTIES TIMEOUT 300
                     ENVIRONMENT "${CLI_ENV}")

# A clean clone (CI) has no timings from earlier runs, and ctest then starts tests in the
# order they were added: the container test (minutes for a cold image build) would start
# last and run alone at the end. COST (about the seconds each takes, ASan build, 2 cores)
# makes ctest -j start the long ones first, so they overlap the many short ones.
foreach(tc container:400 worker_failure:85 dist_async:80 server_failure:65 default_job:50
           k8s_manifests:45 mpi:40 faults:40 network_cut:34 dist_bsp:24 cluster_restart:22
           coordinator_loss:18 cluster_netns:14 auth:14 fence_server:25 fence_worker:22
           gpt_train:20 server_same_port:20 sparse_dist:20)
  string(REPLACE ":" ";" tc "${tc}")
  list(GET tc 0 name)
  list(GET tc 1 cost)
  set_tests_properties(test_${name} PROPERTIES COST ${cost})
endforeach()
