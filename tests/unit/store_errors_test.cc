// Tests of ClassifyDatabaseError: which server errors set a row aside and
// which are retried, each row named for the situation it stands for.
#include "store/store_errors.h"

#include <gtest/gtest.h>

namespace seqrelay {
namespace {

TEST(StoreErrorsTest, OnlyErrorsAboutTheRowItselfRefuseIt) {
  struct Case {
    const char* situation;
    int code;
    DatabaseFailure expected;
  };
  for (const Case& c : {
           Case{"row over max_allowed_packet", 1153, DatabaseFailure::kRowRefused},
           Case{"payload too long for the column", 1406, DatabaseFailure::kRowRefused},
           Case{"a trigger refuses the row", 1644, DatabaseFailure::kRowRefused},
           Case{"a MariaDB CHECK constraint", 4025, DatabaseFailure::kRowRefused},
           Case{"a MySQL CHECK constraint", 3819, DatabaseFailure::kRowRefused},
           Case{"server has gone away", 2006, DatabaseFailure::kRetry},
           Case{"lost connection during query", 2013, DatabaseFailure::kRetry},
           Case{"cannot connect", 2002, DatabaseFailure::kRetry},
           Case{"deadlock (Galera certification)", 1213, DatabaseFailure::kRetry},
           Case{"lock wait timeout", 1205, DatabaseFailure::kRetry},
           Case{"INSERT denied: fixed by a GRANT", 1142, DatabaseFailure::kRetry},
           Case{"too many connections", 1040, DatabaseFailure::kRetry},
           Case{"server read-only", 1290, DatabaseFailure::kRetry},
           Case{"table full (disk)", 1114, DatabaseFailure::kRetry},
           Case{"duplicate key: another writer, not the row", 1062, DatabaseFailure::kRetry},
           Case{"a SEQ another writer committed first (the store's code)", kSeqTakenCode,
                DatabaseFailure::kSeqTaken},
           Case{"the lease moved (the store's code)", kLeaseLostCode, DatabaseFailure::kLeaseLost},
           Case{"no server error number", 0, DatabaseFailure::kRetry},
       }) {
    SCOPED_TRACE(c.situation);
    EXPECT_EQ(ClassifyDatabaseError(c.code), c.expected);
  }
}

TEST(StoreErrorsTest, OnlyWhatExistsAlreadyIsAMigrationStepDoneBefore) {
  EXPECT_TRUE(IsAlreadyApplied(1060)) << "duplicate column";
  EXPECT_TRUE(IsAlreadyApplied(1061)) << "duplicate key name";
  EXPECT_TRUE(IsAlreadyApplied(1050)) << "table exists";
  EXPECT_FALSE(IsAlreadyApplied(1146)) << "no such table";
  EXPECT_FALSE(IsAlreadyApplied(1064)) << "syntax error";
  EXPECT_FALSE(IsAlreadyApplied(0));
}

TEST(StoreErrorsTest, OnlyTheServerRefusingTheLoginIsALoginRefusal) {
  EXPECT_TRUE(IsLoginRefusal(1045)) << "wrong password";
  EXPECT_TRUE(IsLoginRefusal(1044)) << "no grant on the database";
  EXPECT_TRUE(IsLoginRefusal(1049)) << "no such database";
  EXPECT_TRUE(IsLoginRefusal(1698)) << "socket-only user over TCP";
  EXPECT_TRUE(IsLoginRefusal(1130)) << "the user may not connect from this host";
  EXPECT_FALSE(IsLoginRefusal(1203)) << "a limit of sessions: the user may log in once one ends";
  EXPECT_FALSE(IsLoginRefusal(2002)) << "cannot connect: the server may be starting";
  EXPECT_FALSE(IsLoginRefusal(1040)) << "too many connections";
  EXPECT_FALSE(IsLoginRefusal(1142)) << "a table's grant: fixed by a GRANT while running";
  EXPECT_FALSE(IsLoginRefusal(0));
}

// A session refused for a limit of sessions moves to another node alone
// (MysqlStore::Connect): the node is up.
TEST(StoreErrorsTest, OnlyALimitOfSessionsIsASessionLimit) {
  EXPECT_TRUE(IsSessionLimit(1040)) << "too many connections";
  EXPECT_TRUE(IsSessionLimit(1203)) << "the user's max_user_connections";
  EXPECT_TRUE(IsSessionLimit(1226)) << "the user's resources";
  EXPECT_FALSE(IsSessionLimit(2003)) << "cannot connect: the node is down";
  EXPECT_FALSE(IsSessionLimit(1047)) << "a Galera node outside the primary component";
  EXPECT_FALSE(IsSessionLimit(1045));
  EXPECT_FALSE(IsSessionLimit(0));
}

// A connection lost in the middle of a call sends the process's sessions
// to the next node first (MysqlStore::Guard); an error the server answered
// with does not.
TEST(StoreErrorsTest, OnlyABrokenConnectionIsAConnectionLost) {
  EXPECT_TRUE(IsConnectionLost(2013)) << "lost during a query (the read timeout of a node that hangs)";
  EXPECT_TRUE(IsConnectionLost(2006)) << "the server has gone away";
  EXPECT_TRUE(IsConnectionLost(2055)) << "MySQL's extended form of 2013";
  EXPECT_FALSE(IsConnectionLost(2003)) << "cannot connect: no call was in flight";
  EXPECT_FALSE(IsConnectionLost(1047)) << "a Galera node outside the primary component answers";
  EXPECT_FALSE(IsConnectionLost(1213)) << "a deadlock or certification conflict";
  EXPECT_FALSE(IsConnectionLost(0));
}

}  // namespace
}  // namespace seqrelay
