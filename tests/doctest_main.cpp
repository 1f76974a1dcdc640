// SPDX-License-Identifier: Apache-2.0
// The one doctest main of every test executable (the mp_doctest_main library).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
