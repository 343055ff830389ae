# A compare folder whose run was trained at another rate than the one asked for is refused by name:
# the step-2/4 GSOFT run at 2.5e-4 from cli.diffusion_compare is put where the default-rate GSOFT
# run belongs, with the cached base evaluation and class images, and compare must refuse it.
file(REMOVE_RECURSE ${OUT})
file(COPY ${SRC}/subject19/gsoft-lr2.5e-4/ DESTINATION ${OUT}/subject19/gsoft)
file(COPY ${SRC}/subject19/base.json DESTINATION ${OUT}/subject19)
file(COPY ${SRC}/class_images DESTINATION ${OUT})
execute_process(COMMAND ${EXE} --threads 2 diffusion compare --model ${MODEL} --subjects 1 --methods gsoft --steps 2 4
                        --n-base 2 --n 1 --eval-steps 2 --num-class-images 2 --out ${OUT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit code 1, got ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
string(FIND "${err}" "holds a run trained at learning rate 2.5e-4, but gsoft asks for 2e-4; move it to" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "expected the stale-rate error, got:\n${err}")
endif()

# The same run in seed 1's folder, beside a valid seed-0 run: the error names the folder it belongs
# in, with its seed.
file(REMOVE_RECURSE ${OUT}/subject19/gsoft)
file(COPY ${SRC}/subject19/gsoft/ DESTINATION ${OUT}/subject19/gsoft)
file(COPY ${SRC}/subject19/gsoft-lr2.5e-4/ DESTINATION ${OUT}/subject19/gsoft-seed1)
execute_process(COMMAND ${EXE} --threads 2 diffusion compare --model ${MODEL} --subjects 1 --methods gsoft --steps 2 4
                        --n-base 2 --n 1 --eval-steps 2 --num-class-images 2 --seeds 2 --out ${OUT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "holds a run trained at learning rate 2.5e-4, but gsoft asks for 2e-4; move it to ${OUT}/subject19/gsoft-lr2.5e-4-seed1 or delete it" pos)
if(NOT rc EQUAL 1 OR pos EQUAL -1)
  message(FATAL_ERROR "expected the stale-rate error for seed 1 (exit 1), got ${rc}:\n${err}")
endif()
