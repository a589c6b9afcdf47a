# Warnings and sanitizers for dptrain's own code; third-party headers come in as SYSTEM.
add_library(dptrain_warnings INTERFACE)
target_compile_options(dptrain_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter)
if(DPTRAIN_UNITY_BUILD)
  # In a unity batch every source is an included file, so a class defined in one file's anonymous
  # namespace and used as a member there reads to GCC like a header's mistake. It is not one.
  target_compile_options(dptrain_warnings INTERFACE -Wno-subobject-linkage)
endif()
if(DPTRAIN_WERROR)
  target_compile_options(dptrain_warnings INTERFACE -Werror)
endif()

if(DPTRAIN_SANITIZE)
  # GCC's flow analysis misfires on instrumented code: libtorch's inline std::optional<Generator>
  # copies come out "maybe uninitialized" under ASan. A warning then, never an error.
  target_compile_options(dptrain_warnings INTERFACE -Wno-error=maybe-uninitialized)
endif()
if(DPTRAIN_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr)
  add_link_options(-fsanitize=address,undefined)
elseif(DPTRAIN_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(DPTRAIN_SANITIZE)
  message(FATAL_ERROR "DPTRAIN_SANITIZE must be empty, 'address' or 'thread', not '${DPTRAIN_SANITIZE}'")
endif()

# One precompiled <torch/torch.h> shared by every target that includes libtorch: it is the
# difference between a 30-minute and a 10-minute clean build on two cores.
# A reused PCH needs identical flags, so no target defines the <target>_EXPORTS symbol.
function(dptrain_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM dptrain_core)
  set_target_properties(${target} PROPERTIES DEFINE_SYMBOL "")
endfunction()
