# Installs the built library into a scratch prefix, then configures, builds and runs a tiny
# consumer project that uses find_package(gsoft).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
# The consumer uses gsoft's compiler; a sanitizer build (scripts/build-sanitize.sh) also needs its
# OpenMP choice, and exports its -fsanitize link options with the target.
set(extra -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(OPENMP_GOMP)
  list(APPEND extra -DOpenMP_CXX_FLAGS=${OPENMP_FLAGS} -DOpenMP_CXX_LIB_NAMES=gomp -DOpenMP_gomp_LIBRARY=${OPENMP_GOMP})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/build
                -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${extra} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer failed (${rc})")
endif()
