// SPDX-License-Identifier: Apache-2.0
// One poll of one server: reachability, read_only, GTID positions, SHOW SLAVE STATUS, selected
// GLOBAL STATUS and VARIABLES and (every few polls) a summary of SHOW ENGINE INNODB STATUS.
#pragma once

#include <mp/mysql_client.hpp>
#include <string>

#include "topology.hpp"

namespace mp::monitor {

/// Polls through `conn` (connected first when it is not); the status says unreachable, with
/// the reason, when the server does not answer in time. `innodb`: read the InnoDB summary too.
NodeStatus pollNode(mysql::Connection& conn, const mysql::ServerAddress& addr, bool innodb);

/// The InnoDB summary of a SHOW ENGINE INNODB STATUS text: history list length, log sequence
/// number, last checkpoint, checkpoint age, queries inside InnoDB and in queue, pending reads
/// and writes, buffer pool hit rate.
std::map<std::string, std::string> innodbSummary(const std::string& text);

using mysql::sqlQuote;

}  // namespace mp::monitor
