# piquant's layers: one static library per folder of src/, each allowed to include only
# its own headers and those of the layers it depends on (directly or through another).
#
# Headers are included as "folder/file.h". Instead of putting src/ itself on the include
# path (which would make every folder visible to every other), each layer gets its own
# directory build/layers/<layer>/ holding symbolic links to the folders it may see, and
# compiles with only that directory on its include path.

# piquant_layer(NAME [DEPENDS LAYER...]): the library piquant_NAME from src/NAME/*.cpp.
function(piquant_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "DEPENDS")
  set(visible ${name})
  foreach(dep IN LISTS arg_DEPENDS)
    get_property(dep_visible GLOBAL PROPERTY PIQUANT_LAYER_${dep}_VISIBLE)
    if(NOT dep_visible)
      message(FATAL_ERROR "layer ${name} depends on ${dep}, which is not declared before it")
    endif()
    list(APPEND visible ${dep_visible})
  endforeach()
  list(REMOVE_DUPLICATES visible)
  set_property(GLOBAL PROPERTY PIQUANT_LAYER_${name}_VISIBLE ${visible})

  set(tree ${PROJECT_BINARY_DIR}/layers/${name})
  piquant_link_tree(${tree} ${visible})

  file(GLOB sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  add_library(piquant_${name} STATIC ${sources})
  target_include_directories(piquant_${name} PRIVATE ${tree})
  foreach(dep IN LISTS arg_DEPENDS)
    target_link_libraries(piquant_${name} PUBLIC piquant_${dep})
  endforeach()
endfunction()

# piquant_top(TARGET LAYERS LAYER...): an interface target for code above every layer
# (the CLI, tests, benchmarks) that sees and links the given layers and all below them.
function(piquant_top target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "LAYERS")
  set(visible "")
  foreach(layer IN LISTS arg_LAYERS)
    get_property(layer_visible GLOBAL PROPERTY PIQUANT_LAYER_${layer}_VISIBLE)
    list(APPEND visible ${layer_visible})
  endforeach()
  list(REMOVE_DUPLICATES visible)
  set(tree ${PROJECT_BINARY_DIR}/layers/${target})
  piquant_link_tree(${tree} ${visible})
  add_library(${target} INTERFACE)
  target_include_directories(${target} INTERFACE ${tree})
  foreach(layer IN LISTS arg_LAYERS)
    target_link_libraries(${target} INTERFACE piquant_${layer})
  endforeach()
endfunction()

# Makes `tree` hold exactly one symbolic link per folder in `folders`, to src/<folder>.
function(piquant_link_tree tree)
  file(REMOVE_RECURSE ${tree})
  file(MAKE_DIRECTORY ${tree})
  foreach(folder IN LISTS ARGN)
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${folder} ${tree}/${folder} SYMBOLIC)
  endforeach()
endfunction()
