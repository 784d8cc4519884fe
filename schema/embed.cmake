# Turns schema/NNN_*.sql into a C++ source holding each file as a string, so
# the relay binary carries its migrations and needs no files at run time.
# Called as: cmake -DSCHEMA_DIR=... -DOUT=... -P embed.cmake
file(GLOB files "${SCHEMA_DIR}/[0-9][0-9][0-9]_*.sql")
list(SORT files)
set(body "// Generated from schema/*.sql by schema/embed.cmake. Do not edit.\n#include \"store/schema.h\"\n\nnamespace seqrelay {\n\nconst std::vector<Migration>& Migrations() {\n  static const std::vector<Migration> kMigrations = {\n")
# Versions are 1..N, each once: two files of one number (a merge of two
# branches) would leave a database that applied one without the other.
set(expected 1)
foreach(f IN LISTS files)
  get_filename_component(name "${f}" NAME)
  string(SUBSTRING "${name}" 0 3 version)
  math(EXPR version "${version}")
  if(NOT version EQUAL expected)
    message(FATAL_ERROR "schema/${name}: version ${version} where ${expected} was expected (migrations are numbered 1..N, each number once)")
  endif()
  math(EXPR expected "${expected} + 1")
  file(READ "${f}" sql)
  string(APPEND body "      {${version}, \"${name}\", R\"seqrelay_sql(${sql})seqrelay_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return kMigrations;\n}\n\n}  // namespace seqrelay\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
