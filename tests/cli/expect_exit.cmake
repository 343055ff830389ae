# Runs EXE with ARGS (a ;-list) and checks its exit code and that EXPECT_OUT appears in its output.
execute_process(COMMAND ${EXE} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL ${EXPECT_RC})
  message(FATAL_ERROR "expected exit code ${EXPECT_RC}, got ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
string(FIND "${out}${err}" "${EXPECT_OUT}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "expected '${EXPECT_OUT}' in the output\nstdout:\n${out}\nstderr:\n${err}")
endif()
