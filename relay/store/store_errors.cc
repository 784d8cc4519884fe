#include "store/store_errors.h"

namespace seqrelay {

DatabaseFailure ClassifyDatabaseError(int server_error) {
  if (server_error == kLeaseLostCode) return DatabaseFailure::kLeaseLost;
  if (server_error == kSeqTakenCode) return DatabaseFailure::kSeqTaken;
  switch (server_error) {
    case 1048:  // ER_BAD_NULL_ERROR: column cannot be null
    case 1153:  // ER_NET_PACKET_TOO_LARGE: over max_allowed_packet
    case 1264:  // ER_WARN_DATA_OUT_OF_RANGE
    case 1292:  // ER_TRUNCATED_WRONG_VALUE
    case 1301:  // ER_WARN_ALLOWED_PACKET_OVERFLOWED
    case 1366:  // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: incorrect string value
    case 1406:  // ER_DATA_TOO_LONG
    case 1644:  // ER_SIGNAL_EXCEPTION: a trigger's SIGNAL
    case 3819:  // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    case 4025:  // ER_CONSTRAINT_FAILED (MariaDB)
      return DatabaseFailure::kRowRefused;
    default:
      return DatabaseFailure::kRetry;
  }
}

bool IsLoginRefusal(int server_error) {
  switch (server_error) {
    case 1044:  // ER_DBACCESS_DENIED_ERROR: no grant on the database
    case 1045:  // ER_ACCESS_DENIED_ERROR: wrong user or password
    case 1049:  // ER_BAD_DB_ERROR: no such database (--no-migrate)
    case 1130:  // ER_HOST_NOT_PRIVILEGED: the user may not connect from this host
    case 1698:  // ER_ACCESS_DENIED_NO_PASSWORD_ERROR: a user that logs in by socket only
      return true;
    default:
      return false;
  }
}

bool IsSessionLimit(int server_error) {
  switch (server_error) {
    case 1040:  // ER_CON_COUNT_ERROR: too many connections
    case 1203:  // ER_TOO_MANY_USER_CONNECTIONS: the user's max_user_connections
    case 1226:  // ER_USER_LIMIT_REACHED: the user's resources (connections an hour, ...)
      return true;
    default:
      return false;
  }
}

bool IsConnectionLost(int error) {
  return error == 2006     // CR_SERVER_GONE_ERROR: the server has gone away
         || error == 2013  // CR_SERVER_LOST: lost connection to the server during a query
         || error == 2055;  // CR_SERVER_LOST_EXTENDED (MySQL's client library)
}

bool IsAlreadyApplied(int server_error) {
  switch (server_error) {
    case 1050:  // ER_TABLE_EXISTS_ERROR
    case 1060:  // ER_DUP_FIELDNAME: duplicate column name
    case 1061:  // ER_DUP_KEYNAME: duplicate key name
    case 1091:  // ER_CANT_DROP_FIELD_OR_KEY: dropped before
      return true;
    default:
      return false;
  }
}

}  // namespace seqrelay
