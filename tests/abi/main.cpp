// SPDX-License-Identifier: Apache-2.0
// ABI conformance tests: see tests/abi/CMakeLists.txt.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
