// SPDX-License-Identifier: Apache-2.0
// The read-only mode's test: can this statement write? Conservative: what is not recognised as a
// read is treated as a write (skipped).
#pragma once

#include <string_view>

namespace mp::replay {

/// True for SELECT (without INTO OUTFILE/DUMPFILE or a variable), SHOW, DESCRIBE/DESC, EXPLAIN
/// (without ANALYZE, which runs the statement), HELP, USE, session SET (not GLOBAL or
/// PERSIST), BEGIN/START TRANSACTION/COMMIT/ROLLBACK, DO. Leading comments and whitespace are
/// skipped; text with a second statement after a ';' is a write (multi-statements are not split).
bool readOnlySql(std::string_view sql);

}  // namespace mp::replay
