# Fails if some integration test is in no shard (CMakeLists.txt, SHARDS):
# lists the tests that the shards' filters together leave out.
execute_process(COMMAND ${BINARY} --gtest_list_tests "--gtest_filter=${FILTER}" OUTPUT_VARIABLE listed
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cannot list the tests: ${rc}")
endif()
string(REGEX MATCHALL "\n  [A-Za-z0-9_]+" left "${listed}")
if(left)
  message(FATAL_ERROR "tests in no shard (add their fixture to SHARDS in tests/integration/CMakeLists.txt):\n${listed}")
endif()
