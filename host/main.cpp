// SPDX-License-Identifier: Apache-2.0
#include <Poco/Exception.h>

#include <cstdio>

#include "app/application.hpp"

int main(int argc, char** argv) {
    mp::host::blockTerminationSignals();  // before any thread exists
    mp::host::Application app;
    try {
        app.init(argc, argv);
    } catch (const Poco::Exception& e) {
        std::fprintf(stderr, "mysqlprobe: %s (see mysqlprobe --help)\n", e.displayText().c_str());
        return 2;
    }
    return app.runForeground();
}
