// SPDX-License-Identifier: Apache-2.0
// The mysqlprobe command line: options, then config -> plugins -> run.
#pragma once

#include <Poco/Util/ServerApplication.h>

#include <optional>
#include <string>
#include <vector>

namespace mp::host {

class Application : public Poco::Util::ServerApplication {
  public:
    Application();
    /// Runs main() after init(argc, argv) (the foreground path; no daemon fork).
    int runForeground() { return Poco::Util::Application::run(); }

  protected:
    void defineOptions(Poco::Util::OptionSet& options) override;
    void handleOption(const std::string& name, const std::string& value) override;
    int main(const std::vector<std::string>& args) override;

  private:
    int runHost();
    void printHelp() const;

    bool help_ = false;
    bool version_ = false;
    bool check_ = false;
    bool listPlugins_ = false;
    std::string configFile_;
    std::optional<std::string> readFile_;
    std::optional<std::string> ports_;
    std::optional<int> serverPort_;
    std::vector<std::string> pluginDirs_;
    std::string format_ = "auto";  // table on a terminal, JSON into a pipe or a file
    std::string usageError_;
};

/// Blocks SIGINT, SIGTERM and SIGQUIT in the calling thread (and the threads it starts later),
/// so that one signal thread receives them with sigwait().
void blockTerminationSignals();

}  // namespace mp::host
