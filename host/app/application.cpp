// SPDX-License-Identifier: Apache-2.0
#include "app/application.hpp"

#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "app/runtime.hpp"
#include "core/log.hpp"

namespace mp::host {

void blockTerminationSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // A websocket or HTTP peer that disappears must not kill the process.
    signal(SIGPIPE, SIG_IGN);
}

Application::Application() { setUnixOptions(true); }

void Application::defineOptions(Poco::Util::OptionSet& options) {
    using Poco::Util::Option;
    // Not ServerApplication's options: the host runs in the foreground (systemd, containers).
    Poco::Util::Application::defineOptions(options);
    options.addOption(Option("config", "c", "read the configuration from FILE (YAML)")
                          .argument("FILE")
                          .repeatable(false));
    options.addOption(Option("check", "", "validate the configuration and the plugins, then exit"));
    options.addOption(Option("read", "r", "read packets from a pcap/pcapng FILE (offline)")
                          .argument("FILE")
                          .repeatable(false));
    options.addOption(Option("port", "", "MySQL server port(s) to watch, e.g. 3306 or 3306,3307")
                          .argument("PORTS"));
    options.addOption(
        Option("format", "",
               "offline report format: table, json, or auto (the default: table when stdout is a "
               "terminal, json when it is a pipe or a file)")
            .argument("FMT"));
    options.addOption(
        Option("serverport", "", "override serverport (HTTP port; 0: any)").argument("PORT"));
    options.addOption(Option("plugin-dir", "", "also load plugins from DIR (repeatable)")
                          .argument("DIR")
                          .repeatable(true));
    options.addOption(Option("list-plugins", "", "list the plugins found, with their properties"));
    options.addOption(Option("version", "", "print the version and exit"));
    options.addOption(Option("help", "h", "print this help and exit"));
}

void Application::handleOption(const std::string& name, const std::string& value) {
    Poco::Util::Application::handleOption(name, value);
    if (name == "help") {
        help_ = true;
    } else if (name == "version") {
        version_ = true;
    } else if (name == "check") {
        check_ = true;
    } else if (name == "list-plugins") {
        listPlugins_ = true;
    } else if (name == "config") {
        configFile_ = value;
    } else if (name == "read") {
        readFile_ = value;
    } else if (name == "port") {
        ports_ = value;
    } else if (name == "format") {
        if (value != "json" && value != "table" && value != "auto") {
            usageError_ = "--format takes table, json or auto, not '" + value + "'";
        }
        format_ = value;
    } else if (name == "serverport") {
        try {
            size_t used = 0;
            int p = std::stoi(value, &used);
            if (used != value.size() || p < 0 || p > 65535) {
                throw std::out_of_range("port");
            }
            serverPort_ = p;
        } catch (const std::exception&) {
            usageError_ = "--serverport takes a port number 0..65535, not '" + value + "'";
        }
    } else if (name == "plugin-dir") {
        pluginDirs_.push_back(value);
    }
}

void Application::printHelp() const {
    Poco::Util::HelpFormatter help(options());
    help.setCommand("mysqlprobe");
    help.setUsage("-c FILE | -r FILE [--port N] | --list-plugins | --check -c FILE");
    help.setHeader(
        "Watches MySQL/MariaDB traffic on the wire and reports, per query template, how often, "
        "how slow and how it fails.");
    help.setFooter(
        "Exit status: 0 on success, 2 on a configuration, plugin or input error.\n"
        "Configuration keys and endpoints: see README.md and docs/configuration.md.");
    help.setUnixStyle(true);
    help.format(std::cout);
}

namespace {

void printPlugins(const Registry& registry) {
    for (const auto& p : registry.plugins()) {
        const mp_plugin& d = p.desc;
        std::printf("%s  %s  %s  ABI %u.%u  %s\n", d.name, kindName(d.kind), d.version, d.abi_major,
                    d.abi_minor, p.path.c_str());
        if (d.description != nullptr) {
            std::printf("    %s\n", d.description);
        }
        for (size_t i = 0; d.properties != nullptr && d.properties[i].name != nullptr; ++i) {
            const mp_property& pr = d.properties[i];
            std::string def = (pr.flags & MP_PROP_REQUIRED) != 0 ? "(required)"
                              : pr.default_value == nullptr      ? "(unset)"
                              : (pr.flags & MP_PROP_SECRET) != 0
                                  ? "(secret)"
                                  : std::string("default \"") + pr.default_value + "\"";
            std::string range;
            if (pr.min < pr.max) {
                range = " [" + std::to_string(pr.min) + ".." + std::to_string(pr.max) + "]";
            }
            if (pr.choices != nullptr) {
                range = std::string(" {") + pr.choices + "}";
            }
            std::printf("    %-22s %-6s %s%s  %s\n", pr.name, typeName(pr.type), def.c_str(),
                        range.c_str(), pr.description != nullptr ? pr.description : "");
        }
    }
}

}  // namespace

int Application::main(const std::vector<std::string>& args) {
    if (help_) {
        printHelp();
        return 0;
    }
    if (version_) {
        std::printf("mysqlprobe %s (plugin ABI %d.%d)\n", MP_HOST_VERSION, MP_ABI_MAJOR,
                    MP_ABI_MINOR);
        return 0;
    }
    if (!usageError_.empty()) {
        std::fprintf(stderr, "mysqlprobe: %s\n", usageError_.c_str());
        return 2;
    }
    if (!args.empty()) {
        std::fprintf(stderr, "mysqlprobe: unexpected argument '%s' (see mysqlprobe --help)\n",
                     args.front().c_str());
        return 2;
    }
    if (configFile_.empty() && !readFile_ && !listPlugins_) {
        std::fprintf(stderr,
                     "mysqlprobe: nothing to do: give -c FILE (run from a configuration) or -r "
                     "FILE (read a capture); see mysqlprobe --help\n");
        return 2;
    }
    return runHost();
}

int Application::runHost() {
    try {
        Overrides ov;
        ov.readFile = readFile_;
        ov.ports = ports_;
        ov.pluginDirs = pluginDirs_;
        ov.serverPort = serverPort_;
        HostConfig cfg = loadConfig(configFile_, ov);
        RuntimeOptions ro;
        bool offline = configFile_.empty() && readFile_.has_value();
        ro.serveHttp = !offline;
        ro.printFinalReport = readFile_.has_value();
        ro.reportFormat =
            format_ != "auto" ? format_ : (::isatty(STDOUT_FILENO) == 1 ? "table" : "json");
        Runtime rt(cfg, ro);
        rt.loadPlugins();
        if (listPlugins_) {
            printPlugins(rt.registry());
            return 0;
        }
        rt.resolve();
        if (check_) {
            // Every plugin makes its instance (files opened, keys and addresses parsed) and
            // is destroyed again without starting: what fails here would fail at start.
            rt.create();
            rt.stop();
            std::string names;
            for (const auto& s : rt.config().slots) {
                names += (names.empty() ? "" : ", ") + s.slot + "=" + s.plugin;
            }
            std::printf("%s: OK (%s)\n", cfg.file.c_str(), names.c_str());
            for (const auto& w : cfg.warnings) {
                std::printf("warning: %s\n", w.c_str());
            }
            return 0;
        }
        for (const auto& w : cfg.warnings) {
            log(MP_LOG_WARN, "config", w);
        }

        // Signals become a shutdown request; a second one ends the process at once.
        // SIGUSR1 is the host's own wake-up for this thread when it is done.
        std::atomic<bool> exiting{false};
        std::thread signals([&rt, &exiting] {
            sigset_t set;
            sigemptyset(&set);
            for (int s : {SIGINT, SIGTERM, SIGQUIT, SIGUSR1}) {
                sigaddset(&set, s);
            }
            int sig = 0;
            bool first = true;
            while (sigwait(&set, &sig) == 0) {
                if (exiting.load()) {
                    return;
                }
                if (sig == SIGUSR1) {
                    continue;
                }
                if (!first) {
                    log(MP_LOG_ERROR, "host", "second signal: exiting now");
                    _exit(130);
                }
                first = false;
                rt.requestShutdown(0, std::string("signal ") + strsignal(sig));
            }
        });
        auto endSignals = [&] {
            exiting = true;
            pthread_kill(signals.native_handle(), SIGUSR1);
            signals.join();
        };
        int code = 0;
        try {
            rt.create();
            rt.start();
            log(MP_LOG_INFO, "host",
                "running (" + std::to_string(rt.instances().size()) +
                    " plugin instances); stop with SIGINT or SIGTERM");
            code = rt.waitForShutdown();
        } catch (...) {
            endSignals();
            throw;
        }
        // Stopping is bounded: a plugin that hangs in stop() does not keep the process alive.
        std::atomic<bool> stopped{false};
        std::thread watchdog([&stopped] {
            for (int i = 0; i < 50 && !stopped.load(); ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            if (!stopped.load()) {
                log(MP_LOG_ERROR, "host", "plugins did not stop within 5 s: exiting");
                _exit(3);
            }
        });
        rt.stop();
        stopped = true;
        watchdog.join();
        endSignals();
        log(MP_LOG_INFO, "host", "stopped");
        return code;
    } catch (const std::exception& e) {
        // ConfigError, LoadError, StartError and anything else: one line, exit status 2.
        std::fprintf(stderr, "mysqlprobe: %s\n", e.what());
    }
    return 2;
}

}  // namespace mp::host
